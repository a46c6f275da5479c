"""Decoders, end to end: manifest-shaped ONNX graphs with designed outputs, then real models.

Models whose weights are not here are stood in for by small graphs built with
onnx.helper that have the manifest's input and output names, dtypes and shapes;
their outputs are constants (or the input, through Identity) that encode known
boxes and classes. They run in onnxruntime and their outputs go through decode().
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from zoo.errors import ZooError
from zoo.index import labels as label_sets
from zoo.index.catalog import load_index
from zoo.index.manifest import ModelEntry
from zoo.pipeline.postprocess import (
    DECODERS,
    Classification,
    Context,
    Detection,
    Embedding,
    ImageResult,
    RawOutputs,
    Segmentation,
    decode,
    nms,
    register,
)
from zoo.pipeline.preprocess import Geometry, Prepared

SHARED = Path(__file__).resolve().parents[2] / "shared"
DATA = SHARED / "data"
ONNX_TYPES = {"tensor(float)": TensorProto.FLOAT, "tensor(int64)": TensorProto.INT64,
              "tensor(int32)": TensorProto.INT32, "tensor(uint8)": TensorProto.UINT8}
NP_TYPES = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(int32)": np.int32,
            "tensor(uint8)": np.uint8}


# -- helpers ------------------------------------------------------------------------------


def entry(model_id: str) -> ModelEntry:
    return load_index().resolve(model_id).entry


def _value_info(io) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(io.name, ONNX_TYPES[io.type], list(io.shape))


def run_standin(model_id: str, consts: dict[str, np.ndarray], *, nodes=(), dims: dict[str, tuple] = ()) -> dict:
    """Build a graph with the manifest's IO whose outputs are `consts` (or `nodes`), run it, return outputs."""
    e = entry(model_id)
    made = [helper.make_node("Constant", [], [name], value=numpy_helper.from_array(arr, name))
            for name, arr in consts.items()]
    graph = helper.make_graph(made + list(nodes), model_id, [_value_info(i) for i in e.inputs],
                              [_value_info(o) for o in e.outputs])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.checker.check_model(model)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    dims = dict(dims)
    feeds = {i.name: np.zeros(dims.get(i.name) or [d if isinstance(d, int) else 1 for d in i.shape],
                              NP_TYPES[i.type]) for i in e.inputs}
    names = [o.name for o in session.get_outputs()]
    assert names == [o.name for o in e.outputs]
    return dict(zip(names, session.run(names, feeds)))


def decode_for(model_id: str, outputs: dict, geometry: Geometry | None, **kwargs) -> list:
    e = entry(model_id)
    labels = label_sets.load(e.labels) if e.labels else None
    return decode(e.postprocess, outputs, batch=kwargs.pop("batch", 1), geometries=[geometry], labels=labels,
                  **kwargs)


def boxes_of(dets: list[Detection]) -> np.ndarray:
    return np.array([d.box for d in dets])


def shared(*parts: str) -> Path:
    path = DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs {path} (the ../shared data beside the repo), which is absent")
    return path


# -- boxes-nms-in-graph -------------------------------------------------------------------

RCNN_GEOMETRY = Geometry(original=(600, 400), content=(1200, 800), scale=(2.0, 2.0))  # shorter side 400 -> 800
RCNN_BOXES = np.array([[100, 200, 300, 400], [600, 100, 1000, 700], [0, 0, 50, 50]], np.float32)


def test_faster_rcnn_boxes_to_original_pixels_and_threshold() -> None:
    out = run_standin("FasterRCNN-12", {"6379": RCNN_BOXES, "6381": np.array([1, 17, 3], np.int64),
                                        "6383": np.array([0.95, 0.8, 0.3], np.float32)}, dims={"image": (3, 800, 1216)})
    dets = decode_for("FasterRCNN-12", out, RCNN_GEOMETRY)[0]
    assert [(d.index, d.label) for d in dets] == [(1, "person"), (17, "dog")]  # 0.3 < spec threshold 0.7
    np.testing.assert_allclose(boxes_of(dets), [[50, 100, 150, 200], [300, 50, 500, 350]])
    assert dets[0].score == pytest.approx(0.95) and dets[0].mask is None
    assert dets[0].to_dict() == {"index": 1, "label": "person", "score": dets[0].score, "box": [50, 100, 150, 200]}
    everything = decode_for("FasterRCNN-12", out, RCNN_GEOMETRY, score_threshold=0.1)[0]
    assert [d.label for d in everything] == ["person", "dog", "car"]


def test_mask_rcnn_pastes_masks_into_the_original_image() -> None:
    masks = np.zeros((3, 1, 28, 28), np.float32)
    masks[:, :, :, :14] = 1.0  # left half of every box is the object
    out = run_standin("MaskRCNN-12", {"6568": RCNN_BOXES, "6570": np.array([1, 17, 3], np.int64),
                                      "6572": np.array([0.95, 0.8, 0.3], np.float32), "6887": masks})
    dets = decode_for("MaskRCNN-12", out, RCNN_GEOMETRY)[0]
    assert len(dets) == 2
    mask = dets[0].mask  # box 50..150 x 100..200 in the 600x400 original
    assert mask.shape == (400, 600) and mask.dtype == bool
    assert mask[150, 60] and mask[150, 95] and not mask[150, 110] and not mask[150, 149]
    assert not mask[:100].any() and not mask[201:].any() and not mask[:, :50].any()
    assert 101 * 101 * 0.4 < mask.sum() < 101 * 101 * 0.6
    assert "mask" not in dets[0].to_dict()


def test_ssd_resnet34_normalized_boxes_default_threshold() -> None:
    out = run_standin("ssd-12", {
        "bboxes": np.array([[[0.1, 0.2, 0.5, 0.6], [0.0, 0.0, 1.0, 1.0], [0.3, 0.3, 0.4, 0.4]]], np.float32),
        "labels": np.array([[17, 3, 1]], np.int64), "scores": np.array([[0.9, 0.6, 0.4]], np.float32)})
    geometry = Geometry(original=(600, 400), content=(1200, 1200), scale=(2.0, 3.0))  # stretch to 1200x1200
    dets = decode_for("ssd-12", out, geometry)[0]
    assert [d.label for d in dets] == ["dog", "car"]  # 0.4 < default 0.5
    np.testing.assert_allclose(boxes_of(dets), [[60, 80, 300, 240], [0, 0, 600, 400]], atol=1e-4)


def test_ssd_mobilenet_category_ids_and_num_detections_cut() -> None:
    boxes = np.zeros((1, 100, 4), np.float32)
    boxes[0, :3] = [[0.25, 0.1, 0.75, 0.5], [0.0, 0.5, 0.5, 1.0], [0.1, 0.1, 0.2, 0.2]]  # ymin, xmin, ymax, xmax
    classes = np.zeros((1, 100), np.float32)
    classes[0, :3] = [18.0, 1.0, 90.0]
    scores = np.zeros((1, 100), np.float32)
    scores[0, :3] = [0.9, 0.7, 0.99]  # the third row lies past num_detections: padding
    out = run_standin("ssd_mobilenet_v1_12", {"detection_boxes": boxes, "detection_classes": classes,
                                              "detection_scores": scores,
                                              "num_detections": np.array([2], np.float32)},
                      dims={"inputs": (1, 480, 640, 3)})
    dets = decode_for("ssd_mobilenet_v1_12", out, Geometry(original=(640, 480), content=(640, 480)))[0]
    assert [(d.index, d.label) for d in dets] == [(18, "dog"), (1, "person")]
    np.testing.assert_allclose(boxes_of(dets), [[64, 120, 320, 360], [320, 0, 640, 240]], atol=1e-4)


@pytest.mark.parametrize("model_id, indices", [
    ("yolov3-12", np.array([[0, 16, 2], [0, 0, 4]], np.int32)),
    ("tiny-yolov3-11", np.array([[[0, 16, 2], [0, 0, 4]]], np.int32)),
])
def test_yolov3_gathers_indices(model_id: str, indices: np.ndarray) -> None:
    e = entry(model_id)
    names = dict(e.postprocess.outputs)
    boxes = np.zeros((1, 5, 4), np.float32)
    boxes[0, 2] = [10, 20, 110, 220]  # y1, x1, y2, x2 in original pixels
    boxes[0, 4] = [300, 500, 700, 900]  # runs past the 640x480 image: clipped
    scores = np.zeros((1, 80, 5), np.float32)
    scores[0, 16, 2], scores[0, 0, 4], scores[0, 5, 2] = 0.8, 0.6, 0.99  # (5, 2) was not selected by NMS
    out = run_standin(model_id, {names["boxes"][0]: boxes, names["scores"][0]: scores,
                                 names["indices"][0]: indices}, dims={"input_1": (1, 3, 416, 416)})
    dets = decode_for(model_id, out, Geometry(original=(640, 480), content=(416, 416)))[0]
    assert [(d.index, d.label) for d in dets] == [(16, "dog"), (0, "person")]
    assert [d.score for d in dets] == pytest.approx([0.8, 0.6])
    np.testing.assert_allclose(boxes_of(dets), [[20, 10, 220, 110], [500, 300, 640, 480]])


# -- decoders with their own NMS ----------------------------------------------------------


def test_tiny_yolov2_grid_decode_one_strong_cell() -> None:
    grid = np.zeros((1, 5, 25, 13, 13), np.float32)
    grid[0, :, 4] = -10.0  # no objectness anywhere ...
    grid[0, 2, 4, 6, 4], grid[0, 2, 5 + 11, 6, 4] = 10.0, 10.0  # ... but anchor 2 of row 6, col 4: a dog
    grid[0, 2, 4, 6, 5], grid[0, 2, 5 + 11, 6, 5] = 3.0, 10.0  # weaker twin one cell right: IoU 0.74
    out = run_standin("tinyyolov2-8", {"grid": grid.reshape(1, 125, 13, 13)})
    geometry = Geometry(original=(832, 416), content=(416, 416), scale=(0.5, 1.0))
    dets = decode_for("tinyyolov2-8", out, geometry)[0]
    assert [(d.index, d.label) for d in dets] == [(11, "dog")]
    sigmoid10, dog = 1 / (1 + np.exp(-10.0)), np.exp(10.0) / (np.exp(10.0) + 19)
    assert dets[0].score == pytest.approx(sigmoid10 * dog, rel=1e-5)
    cx, cy, w, h = 4.5 * 32, 6.5 * 32, 6.63 * 32, 11.38 * 32  # centre of the cell, anchor 2 size
    expected = [(cx - w / 2) / 0.5, cy - h / 2, (cx + w / 2) / 0.5, cy + h / 2]
    np.testing.assert_allclose(dets[0].box, expected, rtol=1e-5)


def test_yolov4_one_strong_anchor_through_letterbox() -> None:
    heads = [np.zeros((1, s, s, 3, 85), np.float32) for s in (52, 26, 13)]
    heads[2][0, 5, 7, 1, 4] = 0.9  # objectness, used as is
    heads[2][0, 5, 7, 1, 5 + 2] = 0.8  # class 2 (car) probability
    heads[0][0, 1, 1, 0, 4], heads[0][0, 1, 1, 0, 5] = 0.5, 0.4  # 0.2 < threshold 0.25
    out = run_standin("yolov4", dict(zip(["Identity:0", "Identity_1:0", "Identity_2:0"], heads)),
                      dims={"input_1:0": (1, 416, 416, 3)})
    # 832x416 letterboxed into 416x416: scale 0.5, content 416x208 pasted 104 px down.
    geometry = Geometry(original=(832, 416), content=(416, 416), scale=(0.5, 0.5), shift=(0, -104))
    dets = decode_for("yolov4", out, geometry)[0]
    assert [(d.index, d.label) for d in dets] == [(2, "car")]
    assert dets[0].score == pytest.approx(0.72)
    x, y = (0.5 * 1.05 - 0.5 * 0.05 + 7) * 32, (0.5 * 1.05 - 0.5 * 0.05 + 5) * 32  # 240, 176 input px
    w, h = 192, 243  # anchor 1 of the stride-32 head, exp(0) = 1
    expected = [(x - w / 2) / 0.5, max(0, (y - h / 2 - 104) / 0.5), (x + w / 2) / 0.5, (y + h / 2 - 104) / 0.5]
    np.testing.assert_allclose(dets[0].box, expected, rtol=1e-5)


def _retinanet_anchor(stride: float, ratio: float, scale: float) -> np.ndarray:
    w = np.sqrt(stride * stride / ratio) * scale  # retinanet-examples generate_anchors, written out
    return np.array([stride / 2 - w / 2, stride / 2 - w * ratio / 2, stride / 2 + w / 2, stride / 2 + w * ratio / 2])


def test_retinanet_one_strong_anchor() -> None:
    e = entry("retinanet-9")
    consts = {o.name: np.zeros(o.shape, np.float32) for o in e.outputs}
    anchor = 1 * 3 + 1  # scale index 1, ratio index 1 (ratio 2.0)
    consts["output1"][0, anchor * 80 + 17, 10, 20] = 0.9  # a horse at level 0 (stride 8), y 10, x 20
    consts["output1"][0, anchor * 80 + 17, 10, 21] = 0.5  # same class one cell right: suppressed
    consts["output1"][0, anchor * 80 + 2, 10, 21] = 0.3  # another class there: kept
    out = run_standin("retinanet-9", consts)
    geometry = Geometry(original=(1280, 960), content=(640, 480), scale=(0.5, 0.5))
    dets = decode_for("retinanet-9", out, geometry)[0]
    assert [(d.label, round(d.score, 3)) for d in dets] == [("horse", 0.9), ("car", 0.3)]
    box = _retinanet_anchor(8, 2.0, 4 * 2 ** (1 / 3)) + [160, 80, 160, 80]  # zero deltas: the anchor itself
    np.testing.assert_allclose(dets[0].box, box * 2, rtol=1e-5)


@pytest.mark.parametrize("model_id, consts", [
    ("MaskRCNN-12", {"6568": np.zeros((0, 4), np.float32), "6570": np.zeros(0, np.int64),
                     "6572": np.zeros(0, np.float32), "6887": np.zeros((0, 1, 28, 28), np.float32)}),
    ("yolov3-12", {"yolonms_layer_1/ExpandDims_1:0": np.zeros((1, 0, 4), np.float32),
                   "yolonms_layer_1/ExpandDims_3:0": np.zeros((1, 80, 0), np.float32),
                   "yolonms_layer_1/concat_2:0": np.zeros((0, 3), np.int32)}),
    ("tinyyolov2-8", {"grid": np.full((1, 125, 13, 13), -10.0, np.float32)}),
])
def test_nothing_detected_gives_an_empty_list(model_id: str, consts: dict) -> None:
    out = run_standin(model_id, consts)
    assert decode_for(model_id, out, Geometry(original=(640, 480), content=(416, 416))) == [[]]


def test_nms_greedy_and_deterministic() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 10]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.9], np.float32)
    assert nms(boxes, scores, 0.5).tolist() == [0, 2]  # tie: lower index wins, its twin and neighbour go
    assert nms(boxes, scores, 0.99).tolist() == [0, 1, 2]
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []


# -- segmentation -------------------------------------------------------------------------


def test_fcn_class_map_and_shares() -> None:
    out_map = np.zeros((1, 21, 8, 12), np.float32)
    out_map[0, 0] = 1.0
    out_map[0, 15, :, :8] = 2.0  # person on the left two thirds
    out = run_standin("fcn-resnet50-12", {"out": out_map, "aux": np.zeros_like(out_map)},
                      dims={"input": (1, 3, 8, 12)})
    seg = decode_for("fcn-resnet50-12", out, Geometry(original=(24, 16), content=(12, 8), scale=(0.5, 0.5)))[0]
    assert isinstance(seg, Segmentation) and seg.class_map.shape == (16, 24)
    assert (seg.class_map[:, :16] == 15).all() and (seg.class_map[:, 16:] == 0).all()
    assert [(i, label) for i, label, _ in seg.shares] == [(15, "person"), (0, "__background__")]
    assert seg.to_dict()["shares"][0]["share"] == pytest.approx(2 / 3)
    assert seg.to_dict()["shape"] == [16, 24]


def test_segmentation_marks_cropped_pixels_unseen() -> None:
    ctx = Context(outputs={"out": np.zeros((1, 2, 4, 4), np.float32)}, batch=1,
                  geometries=(Geometry(original=(8, 4), content=(4, 4), shift=(2, 0)),))  # centre crop 4 of 8
    seg = DECODERS["segmentation-argmax"](entry("fcn-resnet50-12").postprocess, ctx)[0]
    assert (seg.class_map[:, :2] == -1).all() and (seg.class_map[:, 6:] == -1).all()
    assert (seg.class_map[:, 2:6] == 0).all() and seg.shares == ((0, None, 1.0),)


def test_duc_reshape_layout_and_bilinear_upsample() -> None:
    raw = np.zeros((1, 19, 160000), np.float32)
    raw[0, 0] = 1.0  # road everywhere ...
    # ... except half-resolution pixel (row 6, col 13) = (Y 1, i 2, X 3, j 1): raw index ((i*4+j)*100+Y)*100+X
    cell = ((2 * 4 + 1) * 100 + 1) * 100 + 3
    raw[0, 0, cell], raw[0, 13, cell] = 0.0, 1.0
    out = run_standin("ResNet101-DUC-12", {"seg_loss": raw})
    geometry = Geometry(original=(600, 500), content=(600, 500))  # padded bottom/right to 800x800
    prepared = Prepared(tensor=np.zeros((3, 800, 800), np.float32), geometry=geometry)
    seg = decode_for("ResNet101-DUC-12", out, geometry, prepared=[prepared])[0]
    assert seg.class_map.shape == (500, 600)
    assert np.argwhere(seg.class_map == 13).tolist() == [[12, 26], [12, 27], [13, 26], [13, 27]]
    assert seg.shares[0][:2] == (0, "road") and seg.shares[1][:2] == (13, "car")
    no_tensor = decode_for("ResNet101-DUC-12", out, geometry)[0]  # 160000 * 4 -> a square 800 input
    assert (no_tensor.class_map == seg.class_map).all()


# -- images, embeddings, classification, raw ----------------------------------------------


def test_style_transfer_image_output_clipped_and_resized() -> None:
    e = entry("candy-8")
    identity = helper.make_node("Identity", ["input1"], ["output1"])
    graph = helper.make_graph([identity], "candy", [_value_info(e.inputs[0])], [_value_info(e.outputs[0])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.empty((1, 3, 224, 224), np.float32)
    x[0, 0], x[0, 1], x[0, 2] = 300.0, 100.0, -20.0  # out-of-range values must be clipped
    out = {"output1": session.run(["output1"], {"input1": x})[0]}
    result = decode_for("candy-8", out, Geometry(original=(448, 336), content=(224, 224), scale=(0.5, 2 / 3)))[0]
    assert isinstance(result, ImageResult)
    assert result.to_dict() == {"size": [448, 336], "mode": "RGB"}
    assert result.image.getpixel((10, 300)) == (255, 100, 0)


def test_arcface_embedding_is_unit_norm() -> None:
    vector = np.linspace(-3, 5, 512, dtype=np.float32)[None]
    out = run_standin("arcfaceresnet100-8", {"fc1": vector})
    emb = decode_for("arcfaceresnet100-8", out, None)[0]
    assert isinstance(emb, Embedding) and emb.vector.dtype == np.float32
    assert np.linalg.norm(emb.vector) == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(emb.vector, vector[0] / np.linalg.norm(vector[0]), rtol=1e-5)
    assert emb.to_dict()["dim"] == 512 and emb.to_dict()["norm"] == 1.0


def test_softmax_applied_to_logits_but_never_to_probabilities() -> None:
    logits = np.zeros((1, 1000, 1, 1), np.float32)
    logits[0, 31], logits[0, 954] = 10.0, 9.0
    out = run_standin("densenet-12", {"fc6_1": logits})
    top = decode_for("densenet-12", out, None)[0]
    total = np.exp(10.0) + np.exp(9.0) + 998
    assert [(c.index, c.label) for c in top[:2]] == [(31, "tree frog"), (954, "banana")]
    assert top[0].score == pytest.approx(np.exp(10.0) / total) and len(top) == 5

    probs = np.full((1, 1000, 1, 1), 0.1 / 998, np.float32)
    probs[0, 31], probs[0, 954] = 0.6, 0.3
    out = run_standin("squeezenet1.0-12", {"softmaxout_1": probs})
    top = decode_for("squeezenet1.0-12", out, None, topk=2)[0]
    assert [(c.index, c.score) for c in top] == [(31, pytest.approx(0.6)), (954, pytest.approx(0.3))]
    assert top[0].to_dict() == {"index": 31, "label": "tree frog", "score": top[0].score}


def test_scores_topk_ranks_raw_scores_and_labels_out_of_range() -> None:
    spec = entry("rcnn-ilsvrc13-9").postprocess
    scores = np.array([[-1.5, 0.25, -0.5]], np.float32)
    top = decode(spec, {"fc-rcnn_1": scores}, batch=1, geometries=[None], labels=("a", "b"))[0]
    assert top == [Classification(1, "b", 0.25), Classification(2, None, -0.5), Classification(0, "a", -1.5)]


def test_text_model_returns_raw_outputs() -> None:
    out = run_standin("roberta-base-11", {"output_1": np.ones((1, 7, 768), np.float32),
                                          "output_2": np.zeros((1, 768), np.float32)},
                      dims={"input_ids": (1, 7)})
    raw = decode_for("roberta-base-11", out, None)[0]
    assert isinstance(raw, RawOutputs)
    assert raw.to_dict() == {"output_1": {"shape": [1, 7, 768], "dtype": "float32"},
                             "output_2": {"shape": [1, 768], "dtype": "float32"}}
    two = decode(entry("roberta-base-11").postprocess, {"output_2": np.arange(6.0).reshape(2, 3)}, batch=2,
                 geometries=[None, None])
    assert [r.arrays["output_2"].tolist() for r in two] == [[[0, 1, 2]], [[3, 4, 5]]]


def test_batch_of_two_classifications() -> None:
    spec = entry("mobilenetv2-12").postprocess
    logits = np.zeros((2, 1000), np.float32)
    logits[0, 1], logits[1, 954] = 5.0, 5.0
    results = decode(spec, {"output": logits}, batch=2, geometries=[None, None], topk=1)
    assert [r[0].index for r in results] == [1, 954]


# -- registry and errors ------------------------------------------------------------------


def test_register_custom_decoder_and_errors() -> None:
    spec = dataclasses.replace(entry("mobilenetv2-12").postprocess, kind="my-kind")
    with pytest.raises(ZooError, match="no decoder for postprocess kind 'my-kind'"):
        decode(spec, {"output": np.zeros((1, 3))}, batch=1, geometries=[None])
    register("my-kind", lambda s, ctx: [ctx.array(s, "output").shape for _ in range(ctx.batch)])
    try:
        assert decode(spec, {"output": np.zeros((1, 3))}, batch=1, geometries=[None]) == [(1, 3)]
        with pytest.raises(ZooError, match="already registered"):
            register("my-kind", DECODERS["softmax-topk"])
    finally:
        del DECODERS["my-kind"]
    with pytest.raises(ZooError, match="model output 'output' .* is missing"):
        decode(entry("mobilenetv2-12").postprocess, {"other": np.zeros((1, 3))}, batch=1, geometries=[None])


def test_every_manifest_kind_has_a_decoder() -> None:
    kinds = {e.postprocess.kind for e in load_index().entries if e.postprocess is not None}
    assert kinds <= set(DECODERS)


# -- real models from ../shared -----------------------------------------------------------


def _run_real(model_file: str, model_id: str, image: str):
    from zoo.pipeline import images, preprocess

    e = entry(model_id)
    options = ort.SessionOptions()
    options.log_severity_level = 3  # UltraFace keeps initializers as inputs: silence that warning
    session = ort.InferenceSession(str(shared("models", model_file)), options, providers=["CPUExecutionProvider"])
    prepared = preprocess.prepare(images.open_image(shared("images", image)), e.preprocess)
    names = [o.name for o in session.get_outputs()]
    tensor = prepared.tensor[None] if e.preprocess.has_batch_dim else prepared.tensor  # tiles: already a batch
    outputs = dict(zip(names, session.run(names, {session.get_inputs()[0].name: tensor})))
    return e, prepared, outputs


ULTRAFACE_COUNTS = {"ultraface_1.jpg": 19, "ultraface_3.jpg": 16, "age_gender_baby.jpg": 1,
                    "age_gender_bruce.jpg": 1, "goldfish.jpg": 0}


@pytest.mark.parametrize("model_id", ["version-RFB-320", "version-RFB-640"])
@pytest.mark.parametrize("image, faces", list(ULTRAFACE_COUNTS.items()))
def test_ultraface_face_counts(model_id: str, image: str, faces: int) -> None:
    e, prepared, outputs = _run_real(f"{model_id}.onnx", model_id, image)
    w, h = prepared.geometry.original
    for iou in (e.postprocess.nms_iou, 0.3):  # PROVENANCE counted at IoU 0.3; the spec says 0.5
        spec = dataclasses.replace(e.postprocess, nms_iou=iou)
        dets = decode(spec, outputs, batch=1, geometries=[prepared.geometry], labels=label_sets.load(e.labels))[0]
        assert len(dets) == faces, (iou, [d.to_dict() for d in dets])
        assert all(d.label == "face" and d.score > 0.7 for d in dets)
        for x1, y1, x2, y2 in (d.box for d in dets):
            assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h


def test_super_resolution_merges_colour_at_three_times_the_input() -> None:
    e, prepared, outputs = _run_real("super-resolution-10.onnx", "super-resolution-10", "cat.jpg")
    result = decode(e.postprocess, outputs, batch=1, geometries=[prepared.geometry], prepared=[prepared])[0]
    width, height = prepared.geometry.original
    assert prepared.tensor.shape == (prepared.tiles.count, 1, 224, 224) and prepared.tiles.count > 1
    assert result.image.size == (3 * width, 3 * height) and result.image.mode == "RGB"
    upscaled = np.asarray(result.image, np.float64).mean(axis=(0, 1))
    source = np.asarray(prepared.chroma.convert("RGB"), np.float64).mean(axis=(0, 1))
    np.testing.assert_allclose(upscaled, source, atol=8)  # same colours, three times the pixels


def test_mobilenetv2_int8_frog() -> None:
    e, prepared, outputs = _run_real("mobilenetv2-12-int8.onnx", "mobilenetv2-12-int8", "frog.jpg")
    top = decode(e.postprocess, outputs, batch=1, geometries=[prepared.geometry],
                 labels=label_sets.load(e.labels))[0]
    assert (top[0].index, top[0].label) == (31, "tree frog")
    assert 0 < top[0].score <= 1 and sum(c.score for c in top) <= 1 + 1e-6


# -- super-resolution tiles ---------------------------------------------------------------------


def test_stitch_places_every_tile_where_it_came_from() -> None:
    """A stand-in model that upscales by 3 with np.kron: the stitched plane must be the whole image at 3x."""
    from zoo.pipeline.postprocess import stitch
    from zoo.pipeline.preprocess import TileGrid, tile_starts

    rng = np.random.default_rng(1)
    for w, h in ((500, 375), (224, 224), (100, 60), (431, 225)):
        image = rng.random((h, w), dtype=np.float32)
        grid = TileGrid((w, h), (224, 224), tile_starts(w, 224, 16), tile_starts(h, 224, 16))
        padded = np.pad(image, ((0, max(0, 224 - h)), (0, max(0, 224 - w))), mode="edge")
        tiles = np.stack([np.kron(padded[y:y + 224, x:x + 224], np.ones((3, 3), np.float32))[None]
                          for x, y in grid.origins()])
        np.testing.assert_array_equal(stitch(tiles, grid), np.kron(image, np.ones((3, 3), np.float32)))


def test_super_resolution_covers_frog_at_three_times_and_agrees_with_one_tile() -> None:
    """frog.jpg (800x600) in 12 tiles: a 2400x1800 answer whose luma equals one plain 224x224 run of the
    model on any tile of the photo, away from that tile's own border (where the model saw zero padding)."""
    from zoo.pipeline import images
    from zoo.pipeline.postprocess import stitch

    e, prepared, outputs = _run_real("super-resolution-10.onnx", "super-resolution-10", "frog.jpg")
    result = decode(e.postprocess, outputs, batch=1, geometries=[prepared.geometry], prepared=[prepared])[0]
    photo = images.open_image(shared("images", "frog.jpg"))
    assert photo.size == (800, 600) and result.image.size == (2400, 1800)
    plane = stitch(outputs["output"], prepared.tiles)
    session = ort.InferenceSession(str(shared("models", "super-resolution-10.onnx")),
                                   providers=["CPUExecutionProvider"])
    y = np.asarray(photo.convert("YCbCr"), np.float32)[:, :, 0] / 255
    margin = 15  # 5 input pixels: the receptive field of the model's 5x5 + three 3x3 convolutions
    for x0, y0 in ((300, 200), (0, 0), (576, 376), (101, 333)):  # off the grid, and on its corners
        single = session.run(None, {"input": y[None, None, y0:y0 + 224, x0:x0 + 224]})[0][0, 0]
        ours = plane[3 * y0:3 * y0 + 672, 3 * x0:3 * x0 + 672]
        inner = (slice(margin if y0 else 0, 672 - margin), slice(margin if x0 else 0, 672 - margin))
        assert np.abs(ours[inner] - single[inner]).max() * 255 < 0.5, (x0, y0)
        shifted = plane[3 * y0 + 3:3 * y0 + 675, 3 * x0:3 * x0 + 672]  # the same check one pixel off fails
        assert np.abs(shifted[inner] - single[inner]).max() * 255 > 20
    luma = np.asarray(result.image.convert("YCbCr"), np.float32)[:, :, 0]
    assert np.abs(luma - np.clip(plane * 255, 0, 255)).mean() < 1.5  # the RGB answer carries that luma

"""A PostprocessSpec -> an ONNX graph that decodes the network's outputs as zoo's decoders do.

Covered: top-k classifiers (softmax only where the spec says the outputs are logits, as
decode_topk does; TopK keeps the lower index on ties, as its stable argsort) and UltraFace's
boxes-threshold-nms (per class column: top `candidate_size` scores, NonMaxSuppression with the
spec's threshold and IoU, boxes scaled to the input image's pixels). `plan()` says for every
other kind why it stays outside the graph.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnx

from zoo.export.graph import Builder
from zoo.export.preprocess_graph import GEOMETRY
from zoo.index.manifest import PostprocessSpec

TOPK_KINDS = ("softmax-topk", "already-probabilities-topk", "scores-topk")
IN = "post_in/"  # the decoder graph's inputs: network outputs (and the geometry) under this prefix


@dataclass(frozen=True, slots=True)
class Plan:
    """What the exported file will decode in-graph, or why not."""

    kind: str | None
    outputs: tuple[str, ...]
    reason: str = ""
    geometry: bool = False  # the decoder reads zoo_geometry (boxes back to image pixels)

    @property
    def in_graph(self) -> bool:
        return self.kind is not None


def plan(spec: PostprocessSpec | None, labels: Sequence[str] | None) -> Plan:
    """Choose the in-graph decoder for a spec; Plan(kind=None, reason=...) when there is none."""
    if spec is None:
        return Plan(None, (), "the manifest has no postprocess spec")
    if spec.kind in TOPK_KINDS:
        names = ("scores", "top_k", "top_k_scores") + (("top_k_labels",) if labels else ())
        return Plan(spec.kind, names)
    if spec.kind == "boxes-threshold-nms" and spec.box_coords == "normalized":
        return Plan(spec.kind, ("boxes", "scores", "class_ids") + (("labels",) if labels else ()), geometry=True)
    return Plan(None, (), f"the {spec.kind} decoder is not exported in-graph yet: the file gives the network's "
                          "raw outputs; decode them as zoo.pipeline.postprocess does")


def build(spec: PostprocessSpec, labels: Sequence[str] | None, network_outputs: dict[str, int],
          *, topk: int | None = None) -> onnx.ModelProto:
    """The decoder graph; inputs are IN + network output names (float32) and IN + zoo_geometry.

    `network_outputs` maps each output the decoder reads to its rank.
    """
    b = Builder("post")
    if spec.kind in TOPK_KINDS:
        _topk(b, spec, labels, network_outputs, topk or spec.topk or 5)
    else:
        _threshold_nms(b, spec, labels, network_outputs)
    return b.model("zoo_postprocess")


def _input(b: Builder, name: str, rank: int) -> str:
    return b.add_input(IN + name, "float32", [None] * rank)


def _label_outputs(b: Builder, labels: Sequence[str] | None, index: str, name: str, shape: list[int | str | None]
                   ) -> None:
    """A string constant of the label set, gathered by class index (out-of-range indices clamp)."""
    if not labels:
        return
    table = b.const(np.asarray(list(labels), dtype=object), "string")
    safe = b.op("Clip", [index, b.const(0, "int64"), b.const(len(labels) - 1, "int64")])
    b.add_output(b.op("Gather", [table, safe]), name, "string", shape)


def _topk(b: Builder, spec: PostprocessSpec, labels: Sequence[str] | None, outputs: dict[str, int],
          k: int) -> None:
    name = spec.output("output")
    x = b.op("Flatten", [_input(b, name, outputs[name])], axis=1)  # [N, classes] drops [1,1000,1,1]'s 1-dims
    if spec.kind == "softmax-topk" and spec.apply_softmax:
        x = b.op("Softmax", [x], axis=-1)
    b.add_output(x, "scores", "float32", ["batch", "classes"])
    classes = b.op("Slice", [b.op("Shape", [x]), b.i64(1), b.i64(2)])
    kk = b.op("Min", [classes, b.i64(k)])
    values, indices = b.ops("TopK", [x, kk], 2, axis=-1, largest=1, sorted=1)
    b.add_output(indices, "top_k", "int64", ["batch", "k"])
    b.add_output(values, "top_k_scores", "float32", ["batch", "k"])
    _label_outputs(b, labels, indices, "top_k_labels", ["batch", "k"])


def _threshold_nms(b: Builder, spec: PostprocessSpec, labels: Sequence[str] | None, outputs: dict[str, int]) -> None:
    """UltraFace: scores [1, N, C], boxes [1, N, 4] normalised xyxy -> kept boxes in image pixels."""
    scores = _input(b, spec.output("scores"), outputs[spec.output("scores")])
    boxes = _input(b, spec.output("boxes"), outputs[spec.output("boxes")])
    geometry = b.add_input(IN + GEOMETRY, "float32", [8])
    column = spec.param("score_column")
    threshold = spec.score_threshold if spec.score_threshold is not None else 0.7
    iou = spec.nms_iou if spec.nms_iou is not None else 0.5
    per_class = b.op("Transpose", [scores], perm=[0, 2, 1])  # [1, C, N]
    first = column if column is not None else 1  # column 0 = background
    last = column + 1 if column is not None else 2 ** 31
    per_class = b.op("Slice", [per_class, b.i64(first), b.i64(last), b.i64(1)])
    # zoo keeps the `candidate_size` best scores of each class before NMS: the others are masked below
    # any threshold (ScatterElements marks the TopK positions), so NonMaxSuppression never sees them.
    n = b.op("Slice", [b.op("Shape", [per_class]), b.i64(2), b.i64(3)])
    k = b.op("Min", [n, b.i64(int(spec.param("candidate_size", 200)))])
    top, idx = b.ops("TopK", [per_class, k], 2, axis=-1, largest=1, sorted=1)  # [1, C', k]
    zeros = b.op("Mul", [per_class, b.const(0.0)])
    marked = b.op("ScatterElements", [zeros, idx, b.op("Add", [b.op("Mul", [top, b.const(0.0)]), b.const(1.0)])],
                  axis=2)
    masked = b.op("Where", [b.op("Greater", [marked, b.const(0.5)]), per_class, b.const(-1.0)])
    selected = b.op("NonMaxSuppression", [boxes, masked, b.const([2 ** 31 - 1], "int64"), b.const([iou]),
                                          b.const([threshold])])  # [K, 3]: (batch, class, box)
    kept_scores = b.op("GatherND", [masked, selected])  # [K]
    order = b.ops("TopK", [kept_scores, b.op("Shape", [kept_scores])], 2, axis=0, largest=1, sorted=1)[1]
    selected = b.op("Gather", [selected, order], axis=0)  # all classes by score, as make_detections sorts
    cls = b.op("Squeeze", [b.op("Slice", [selected, b.i64(1), b.i64(2), b.i64(1)]), b.i64(1)])
    pos = b.op("Squeeze", [b.op("Slice", [selected, b.i64(2), b.i64(3), b.i64(1)]), b.i64(1)])
    kept = b.op("Gather", [b.op("Squeeze", [boxes, b.i64(0)]), pos])  # [K, 4] normalised xyxy
    pixels = _to_original(b, kept, geometry)
    wh = _geometry_part(b, geometry, 0)
    b.add_output(b.op("Min", [b.op("Max", [pixels, b.const(0.0)]), wh]), "boxes", "float32", ["detections", 4])
    b.add_output(b.op("Gather", [kept_scores, order]), "scores", "float32", ["detections"])
    class_ids = b.op("Add", [cls, b.const(first, "int64")])
    b.add_output(class_ids, "class_ids", "int64", ["detections"])
    _label_outputs(b, labels, class_ids, "labels", ["detections"])


def _geometry_part(b: Builder, geometry: str, start: int) -> str:
    """A (x, y) pair of the geometry vector tiled to (x, y, x, y), matching xyxy boxes."""
    return b.op("Tile", [b.op("Slice", [geometry, b.i64(start), b.i64(start + 2)]), b.i64(2)])


def _to_original(b: Builder, normalized: str, geometry: str) -> str:
    """Geometry.to_original(normalized=True): (b * content + shift) / scale (clipping is the caller's)."""
    content, scale, shift = (_geometry_part(b, geometry, i) for i in (2, 4, 6))
    return b.op("Div", [b.op("Add", [b.op("Mul", [normalized, content]), shift]), scale])

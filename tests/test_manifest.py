"""Manifest parsing, validation errors, user manifests and the recorded traps."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from zoo.errors import ManifestError
from zoo.index.catalog import builtin_manifest_dir, load_index, read_manifest_file

GOOD_MODEL = {
    "id": "acme-net-1",
    "hub_name": "ACME Net",
    "aliases": ["acme"],
    "task": "classification",
    "variant": "fp32",
    "opset": 13,
    "tags": ["vision", "in-house"],
    "file": {"path": "private/acme-net-1.onnx", "sha256": "ab" * 32, "size": 1234},
    "inputs": [{"name": "x", "shape": ["N", 3, 224, 224], "type": "tensor(float)"}],
    "outputs": [{"name": "y", "shape": ["N", 10], "type": "tensor(float)"}],
    "preprocess": {
        "kind": "image", "resize": {"method": "shorter_side_center_crop", "shorter_side": 256, "crop": [224, 224]},
        "interpolation": "bilinear", "scale": 0.00392156862745098, "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225], "channel_order": "RGB", "layout": "NCHW", "dtype": "float32",
    },
    "postprocess": {"kind": "softmax-topk", "outputs": {"output": "y"}, "apply_softmax": True, "topk": 5},
    "labels": None,
    "confidence": {"level": "high", "reason": "trained in house"},
}


def write_manifest(folder: Path, models: list[dict], name: str = "acme.json") -> Path:
    path = folder / name
    path.write_text(json.dumps({"schema_version": 1, "family": "acme", "models": models}))
    return path


def broken(path: str, value: object) -> dict:
    """GOOD_MODEL with one field (dotted path, [i] for lists) replaced."""
    model = copy.deepcopy(GOOD_MODEL)
    *parents, last = path.replace("[", ".").replace("]", "").split(".")
    target = model
    for key in parents:
        target = target[int(key)] if key.isdigit() else target[key]
    target[int(last) if last.isdigit() else last] = value
    return model


def test_user_manifest_is_listed_and_resolvable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_manifest(tmp_path, [GOOD_MODEL])
    monkeypatch.setenv("ZOO_MANIFESTS", str(tmp_path))
    index = load_index()
    assert len(index) == 185
    entry = index.resolve("acme").entry
    assert entry.id == "acme-net-1" and entry.family == "acme" and entry.manifest.endswith("acme.json")
    assert entry.preprocess.output_size == (224, 224)


def test_several_user_paths_are_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a").mkdir()
    first = write_manifest(tmp_path / "a", [GOOD_MODEL])
    second = write_manifest(tmp_path, [broken("id", "acme-net-2")], name="second.json")
    monkeypatch.setenv("ZOO_MANIFESTS", f"{first}:{second}")
    assert {"acme-net-1", "acme-net-2"} <= {e.id for e in load_index().entries}


@pytest.mark.parametrize(
    ("field", "value", "expected_field", "words"),
    [
        ("file.sha256", "not-a-hash", "file.sha256", "64 lowercase hex"),
        ("file.size", -1, "file.size", "positive"),
        ("file.path", "../../etc/passwd", "file.path", "relative path"),
        ("file.path", "/abs/model.onnx", "file.path", "relative path"),
        ("opset", "13", "opset", "expected int"),
        ("task", None, "task", "required"),
        ("preprocess.resize.method", "squash", "preprocess.resize.method", "must be one of"),
        ("preprocess.resize.crop", [224], "preprocess.resize.crop", "[height, width]"),
        ("preprocess.channel_order", "RBG", "preprocess.channel_order", "must be one of"),
        ("preprocess.mean", [0.5, 0.5], "preprocess.mean", "expected 3 numbers"),
        ("inputs[0].shape", "N,3,224,224", "inputs[0].shape", "expected list"),
        ("postprocess.kind", "argmax", "postprocess.kind", "must be one of"),
        ("postprocess.outputs", {"output": 7}, "postprocess.outputs.output", "output name"),
        ("aliases", "acme", "aliases", "expected list"),
        ("preprocess.chanel_order", "RGB", "preprocess.chanel_order", "did you mean 'channel_order'"),
        ("file.md5", "abc", "file.md5", "unknown field"),
    ],
)
def test_broken_field_names_file_model_and_field(
    tmp_path: Path, field: str, value: object, expected_field: str, words: str
) -> None:
    path = write_manifest(tmp_path, [broken(field, value)])
    with pytest.raises(ManifestError) as err:
        read_manifest_file(path)
    assert err.value.source == str(path)
    assert err.value.model_id == "acme-net-1"
    assert err.value.field == expected_field
    assert words in err.value.problem
    assert str(path) in str(err.value) and "acme-net-1" in str(err.value) and expected_field in str(err.value)


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        ("{not json", "", "invalid JSON at line 1"),
        ('{"schema_version": 2, "family": "x", "models": []}', "schema_version", "must be 1"),
        ('{"schema_version": 1, "models": []}', "family", "non-empty"),
        ('{"schema_version": 1, "family": "x", "models": {}}', "models", "list"),
        ("[]", "", "top level"),
    ],
)
def test_broken_file_structure(tmp_path: Path, text: str, field: str, words: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ManifestError) as err:
        read_manifest_file(path)
    assert (err.value.field, err.value.source) == (field, str(path))
    assert words in err.value.problem


def test_collision_with_builtin_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_manifest(tmp_path, [broken("id", "VGG19-7")])
    monkeypatch.setenv("ZOO_MANIFESTS", str(tmp_path))
    with pytest.raises(ManifestError) as err:
        load_index()
    assert err.value.model_id == "VGG19-7" and err.value.field == "id"
    assert "built-in" in str(err.value)


def test_collision_between_user_manifests(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_manifest(tmp_path, [GOOD_MODEL], name="a.json")
    write_manifest(tmp_path, [GOOD_MODEL], name="b.json")
    monkeypatch.setenv("ZOO_MANIFESTS", str(tmp_path))
    with pytest.raises(ManifestError, match="a.json"):
        load_index()


def test_missing_user_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZOO_MANIFESTS", str(tmp_path / "nope"))
    with pytest.raises(ManifestError, match="does not exist"):
        load_index()


def test_to_dict_round_trips_through_from_dict(tmp_path: Path) -> None:
    entries = read_manifest_file(builtin_manifest_dir() / "yolov3.json")
    as_json = json.loads(json.dumps([e.to_dict() for e in entries]))
    again = read_manifest_file(write_manifest(tmp_path, as_json, name="copy.json"))
    assert [a.preprocess for a in again] == [e.preprocess for e in entries]
    assert [a.postprocess for a in again] == [e.postprocess for e in entries]
    assert [a.file for a in again] == [e.file for e in entries]


# The traps the reference records: a wrong recipe here gives confident wrong answers.


def entry(model_id: str):
    return load_index().resolve(model_id).entry


def test_trap_squeezenet_10_is_caffe_bgr_and_11_is_torch_rgb() -> None:
    v10, v11 = entry("squeezenet1.0-12").preprocess, entry("squeezenet1.1-7").preprocess
    assert (v10.channel_order, v10.scale, v10.std, v10.resize.method) == ("BGR", 1.0, None, "stretch")
    assert v10.mean == (103.939, 116.779, 123.68)
    assert (v11.channel_order, v11.resize.method, v11.std) == ("RGB", "shorter_side_center_crop", (0.229, 0.224, 0.225))
    assert entry("squeezenet1.0-12").postprocess.kind == "already-probabilities-topk"
    assert entry("squeezenet1.1-7").postprocess.apply_softmax is True


@pytest.mark.parametrize("model_id", ["bvlcalexnet-12", "caffenet-12", "googlenet-12", "zfnet512-12", "vgg19-caffe2-9"])
def test_trap_caffe_models_bgr_0_255_already_softmaxed(model_id: str) -> None:
    e = entry(model_id)
    assert (e.preprocess.channel_order, e.preprocess.scale) == ("BGR", 1.0)
    assert e.preprocess.mean[0] < e.preprocess.mean[2]  # blue mean first
    assert e.postprocess.kind == "already-probabilities-topk" and not e.postprocess.apply_softmax


def test_trap_efficientnet_lite4_nhwc_minus_127_over_128() -> None:
    r = entry("efficientnet-lite4-11").preprocess
    assert (r.layout, r.mean, r.std, r.scale) == ("NHWC", (127.0,) * 3, (128.0,) * 3, 1.0)


def test_trap_ferplus_gray_64_raw() -> None:
    r = entry("emotion-ferplus-8").preprocess
    assert (r.channel_order, r.output_size, r.scale, r.mean) == ("GRAY", (64, 64), 1.0, None)


def test_trap_yolov3_second_input_and_tiny_yolov2_0_255() -> None:
    y3 = entry("yolov3-10").preprocess
    assert [(x.name, x.value, x.dtype) for x in y3.extra_inputs] == [("image_shape", "original_hw", "float32")]
    assert y3.resize.method == "letterbox" and y3.resize.pad_value == (128.0,) * 3
    assert entry("tinyyolov2-8").preprocess.scale == 1.0


def test_trap_rcnn_bgr_no_batch_pad_32() -> None:
    for model_id in ("FasterRCNN-12", "MaskRCNN-12"):
        r = entry(model_id).preprocess
        assert (r.channel_order, r.layout, r.has_batch_dim) == ("BGR", "CHW", False)
        assert (r.resize.method, r.resize.shorter_side, r.resize.pad_to_multiple) == ("shorter_side", 800, 32)
        assert entry(model_id).postprocess.box_coords == "input-pixels"


def test_trap_ssd_mobilenet_uint8_nhwc_category_ids() -> None:
    e = entry("ssd_mobilenet_v1_12")
    assert (e.preprocess.dtype, e.preprocess.layout, e.preprocess.resize.method) == ("uint8", "NHWC", "none")
    assert (e.postprocess.label_format, e.labels) == ("category-id", "coco90-tf-od")
    assert e.postprocess.box_order == "yxyx"


def test_trap_ultraface_sizes_are_width_by_height() -> None:
    assert entry("version-RFB-320").preprocess.output_size == (240, 320)
    assert entry("version-RFB-640").preprocess.output_size == (480, 640)


def test_trap_super_resolution_on_y() -> None:
    e = entry("super-resolution-10")
    assert e.preprocess.channel_order == "Y" and e.postprocess.kind == "super-resolution-ycbcr-merge"
    assert e.postprocess.param("upscale_factor") == 3


def test_tiles_round_trip_and_are_validated(tmp_path: Path) -> None:
    e = entry("super-resolution-10")
    assert e.preprocess.tiles.overlap == 16 and e.to_dict()["preprocess"]["tiles"] == {"overlap": 16}
    as_json = json.loads(json.dumps(e.to_dict()))
    again = read_manifest_file(write_manifest(tmp_path, [{**as_json, "id": "tiled-copy-1", "aliases": [],
                                                          "hub_name": "Tiled Copy"}]))
    assert again[0].preprocess == e.preprocess
    too_wide = broken("preprocess.tiles", {"overlap": 112})
    with pytest.raises(ManifestError) as err:
        read_manifest_file(write_manifest(tmp_path, [too_wide], name="wide.json"))
    assert err.value.field == "preprocess.tiles.overlap" and "more than twice the overlap" in err.value.problem


def test_value_walk_is_iterative_and_names_the_model(tmp_path: Path) -> None:
    """Thousands of entries and a bad value deep in the last one: found, with its model and field."""
    from zoo.index.manifest_reader import parse_json

    models = [broken("id", f"m-{i}") for i in range(3000)]
    text = json.dumps({"schema_version": 1, "family": "acme", "models": models})
    text = text[: text.rindex('"topk": 5')] + '"topk": NaN' + text[text.rindex('"topk": 5') + 9:]
    with pytest.raises(ManifestError) as err:
        parse_json(text.encode(), "big.json")
    assert (err.value.source, err.value.model_id, err.value.field) == ("big.json", "m-2999", "postprocess.topk")

"""Every one of the 184 validated models against ../shared/reference facts.

sha256, size, opset, IO and label set must be equal; recipes must carry the
reference's numbers (size, scale, mean, std, channel order, layout, dtype,
resize parameters, interpolation where the reference names one).
"""

from __future__ import annotations

import json
from functools import lru_cache

import pytest
from conftest import REFERENCE, need

from zoo.index.catalog import load_index

# The reference's free-text resize methods, and the zoo method each becomes.
RESIZE_METHODS = {
    "direct": "stretch",
    "direct (warp region proposal to input size)": "stretch",
    "direct (graph input is fixed 480x640; README shows no resize)": "stretch",
    "shorter_side_then_center_crop": "shorter_side_center_crop",
    "aspect_resize_then_center_crop": "shorter_side_center_crop",
    "shorter_side": "shorter_side",
    "optional shorter_side (recommended)": "shorter_side",
    "letterbox": "letterbox",
    "resize_cover_then_center_crop": "cover_center_crop",
    "pad/crop to graph size": "pad_to_size",
    "face_alignment": "face_align",
    "none (any size; resizing to 300x300 happens inside the graph)": "none",
}
INTERPOLATION_WORDS = {"bicubic": "bicubic", "antialias": "lanczos", "lanczos": "lanczos", "bilinear": "bilinear"}


@lru_cache(maxsize=1)
def reference() -> dict[str, dict]:
    return {m["id"]: m for m in json.loads(need(REFERENCE).read_text())}


def reference_ids() -> list[str]:
    if not REFERENCE.exists():
        return ["<reference absent>"]
    return list(reference())


@pytest.fixture(scope="module")
def index():
    return load_index()


def test_all_184_present(index) -> None:
    ref = reference()
    assert len(ref) == 184
    missing = sorted(set(ref) - {e.id for e in index.entries})
    assert missing == []


def _io(entries) -> list[dict] | None:
    if entries is None:
        return None
    return [{"name": io.name, "shape": list(io.shape), "type": io.type} for io in entries]


@pytest.mark.parametrize("model_id", reference_ids())
def test_file_facts_equal_reference(index, model_id: str) -> None:
    ref = reference()[model_id]
    entry = index.resolve(model_id).entry
    assert (entry.file.path, entry.sha256, entry.size) == (ref["path"], ref["sha256"], ref["bytes"])
    assert (entry.opset, entry.onnx_version, entry.hub_name) == (ref["opset"], ref["onnx_version"], ref["hub_name"])
    assert (entry.task, entry.variant, entry.license) == (ref["task"], ref["variant"], ref["license"])
    assert list(entry.tags) == ref["tags"]
    if ref["tar_path"]:
        assert entry.test_data is not None
        assert (entry.test_data.path, entry.test_data.sha256, entry.test_data.size) == (
            ref["tar_path"], ref["tar_sha256"], ref["tar_bytes"])
    else:
        assert entry.test_data is None
    assert _io(entry.inputs) == ref["inputs"]
    assert _io(entry.outputs) == ref["outputs"]
    assert entry.labels == ref["labels"]
    assert entry.confidence.level == ref["facts_confidence"]["level"]


@pytest.mark.parametrize("model_id", reference_ids())
def test_recipe_equals_reference(index, model_id: str) -> None:
    ref = reference()[model_id]["preprocess"]
    recipe = index.resolve(model_id).entry.preprocess
    assert recipe is not None and recipe.kind == ref["kind"]
    if ref["kind"] == "text":
        assert dict(recipe.inputs) == ref["inputs"]
        assert recipe.tokenizer == ref["tokenizer"]
        return
    assert recipe.input == ref.get("input")
    assert recipe.channel_order == ref["channel_order"]
    # "CHW (NO batch dimension)" -> CHW; "sequence of HWC uint8[?,?,3] images" -> HWC
    assert recipe.layout in ref["layout"].replace("(", " ").split()
    assert recipe.dtype == ref["dtype"]
    if ref["kind"] != "image":
        return
    assert recipe.scale == (1.0 if ref["scale"] is None else ref["scale"])
    assert recipe.mean == (None if ref["mean"] is None else tuple(ref["mean"]))
    assert recipe.std == (None if ref["std"] is None else tuple(ref["std"]))
    assert recipe.output_size == (None if ref["size"] is None else tuple(ref["size"]))
    resize = ref["resize"]
    assert recipe.resize.method == RESIZE_METHODS[resize["method"]]
    for key in ("shorter_side", "pad_to_multiple"):
        if key in resize:
            assert getattr(recipe.resize, key) == resize[key]
    if resize.get("crop"):
        assert recipe.resize.crop == tuple(resize["crop"])
    if resize["method"] == "letterbox":
        assert recipe.resize.pad_value == tuple(resize["pad_value"])
    named = [z for word, z in INTERPOLATION_WORDS.items() if word in (ref["interpolation"] or "").lower()]
    if named:
        assert recipe.interpolation == named[0]
    assert [e.name for e in recipe.extra_inputs] == [e["name"] for e in ref["extra_inputs"] or []]
    assert all(e.dtype == r["dtype"] for e, r in zip(recipe.extra_inputs, ref["extra_inputs"] or []))


@pytest.mark.parametrize("model_id", reference_ids())
def test_postprocess_equals_reference(index, model_id: str) -> None:
    ref = reference()[model_id]["postprocess"]
    post = index.resolve(model_id).entry.postprocess
    assert post is not None and post.kind == ref["kind"]
    if "output" in ref:
        assert post.output("output") == ref["output"]
    elif isinstance(ref["outputs"], dict):
        for role, names in ref["outputs"].items():
            assert list(dict(post.outputs)[role]) == ([names] if isinstance(names, str) else names)
    else:
        assert list(dict(post.outputs)["heads"]) == ref["outputs"]
    assert post.apply_softmax == bool(ref.get("apply_softmax"))
    assert post.squeeze == bool(ref.get("squeeze"))
    assert post.topk == ref.get("topk")
    if isinstance(ref.get("score_threshold"), float):
        assert post.score_threshold == ref["score_threshold"]

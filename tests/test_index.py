"""Name resolution: ids, aliases, hub names, opsets, suggestions."""

from __future__ import annotations

import pytest

from zoo.errors import OpsetError, UnknownModelError
from zoo.index.catalog import load_index


@pytest.fixture(scope="module")
def index():
    return load_index()


@pytest.mark.parametrize(
    ("name", "expected", "how"),
    [
        ("vgg19-7", "vgg19-7", "id"),
        ("VGG19-7", "vgg19-7", "id"),
        ("vgg 19", "vgg19-7", "alias"),
        ("VGG 19", "vgg19-7", "alias"),
        ("vgg19", "vgg19-7", "alias"),
        ("resnet50", "resnet50-v1-12", "alias"),
        ("ResNet50-fp32", "resnet50-v1-12", "hub_name"),
        ("AlexNet", "bvlcalexnet-12", "alias"),
        ("SqueezeNet 1.0", "squeezenet1.0-12", "alias"),
        ("squeezenet1.1", "squeezenet1.1-7", "alias"),
        ("ultraface", "version-RFB-640", "alias"),
        ("mnist", "mnist-12", "alias"),
        ("mnist-int8", "mnist-12-int8", "alias"),
        ("Tiny YOLOv2", "tinyyolov2-8", "alias"),
        ("Faster R-CNN R-50-FPN", "FasterRCNN-10", "hub_name"),
        ("yolov4", "yolov4", "id"),
    ],
)
def test_resolve(index, name: str, expected: str, how: str) -> None:
    resolution = index.resolve(name)
    assert resolution.entry.id == expected
    assert resolution.how == how


def test_resolution_note_names_the_choice(index) -> None:
    resolution = index.resolve("resnet50")
    assert resolution.note is not None
    assert "resnet50-v1-12" in resolution.note and "resnet50-v1-7" in resolution.note
    assert index.resolve("vgg19-7").note is None


def test_opset_picks_variant(index) -> None:
    assert index.resolve("alexnet", opset=7).entry.id == "bvlcalexnet-7"
    assert index.resolve("AlexNet", opset=3).entry.id == "bvlcalexnet-3"
    assert index.resolve("resnet50", opset=7).entry.id == "resnet50-v1-7"


def test_unknown_opset_lists_valid_ones(index) -> None:
    with pytest.raises(OpsetError) as err:
        index.resolve("alexnet", opset=11)
    assert sorted({o for _, o in err.value.available}) == [3, 6, 7, 8, 9, 12]
    assert "bvlcalexnet-9 (opset 9)" in str(err.value)


def test_exact_id_with_other_opset_is_an_error(index) -> None:
    with pytest.raises(OpsetError) as err:
        index.resolve("vgg16-12", opset=7)
    assert ("vgg16-7", 7) in err.value.available


def test_unknown_name_suggests(index) -> None:
    with pytest.raises(UnknownModelError) as err:
        index.resolve("resnett50")
    assert 1 <= len(err.value.suggestions) <= 5
    assert "resnet50" in err.value.suggestions
    assert "did you mean" in str(err.value)


def test_ties_are_deterministic(index) -> None:
    # Same hub-name group resolved twice, and the fp32 variant wins at equal opset.
    first = index.resolve("ssd").entry.id
    assert first == index.resolve("SSD").entry.id == "ssd-12"


def test_aliases_never_shadow_ids(index) -> None:
    ids = {e.id.lower() for e in index.entries}
    for entry in index.entries:
        for alias in entry.aliases:
            assert alias.lower() not in ids, f"{entry.id} alias {alias} equals a model id"


def test_filter_and_search(index) -> None:
    detection = index.filter(task="detection")
    assert detection and all(e.task == "detection" for e in detection)
    text = index.filter(tag="text")
    assert {e.family for e in text} >= {"bert-squad", "gpt-2"}
    found = {e.id for e in index.search("yolo")}
    assert {"yolov3-10", "yolov4", "tinyyolov2-8", "tiny-yolov3-11", "yolov2-coco-9"} <= found
    assert {e.id for e in index.search("VGG 19")} >= {"vgg19-7", "vgg19-bn-7"}

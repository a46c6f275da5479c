"""Packaged label sets: present for every model that names one, sized to its outputs."""

from __future__ import annotations

import pytest
from conftest import DATA, need

from zoo.index import labels
from zoo.index.catalog import load_index

# How many labels each set must hold, and the classifier output width it serves.
EXPECTED = {
    "imagenet1k": 1000, "coco80": 80, "coco80+background": 81, "coco90-tf-od": 91, "voc20": 20, "voc21": 21,
    "cityscapes19": 19, "ferplus8": 8, "mnist10": 10, "face2": 2, "sentiment2": 2, "ilsvrc13-det200": 200,
}


def test_every_label_set_named_by_a_model_is_packaged() -> None:
    named = {e.labels for e in load_index().entries if e.labels}
    assert named <= set(labels.names())
    assert set(EXPECTED) == set(labels.names())


@pytest.mark.parametrize(("name", "count"), sorted(EXPECTED.items()))
def test_label_counts(name: str, count: int) -> None:
    loaded = labels.load(name)
    assert len(loaded) == count
    assert all(loaded), f"{name} has an empty label"


def test_display_names() -> None:
    imagenet = labels.load("imagenet1k")
    assert (imagenet[0], imagenet[1], imagenet[31], imagenet[954]) == ("tench", "goldfish", "tree frog", "banana")
    coco90 = labels.load("coco90-tf-od")
    assert (coco90[1], coco90[12], coco90[90], coco90[13]) == ("person", "n/a", "toothbrush", "stop sign")
    assert sum(1 for x in coco90[1:] if x != "n/a") == 80
    assert labels.load("coco80+background")[1:] != labels.load("coco80")  # darknet vs COCO-2017 spelling
    assert labels.load("ilsvrc13-det200")[:2] == ("accordion", "airplane")


def test_classifier_output_width_matches_labels() -> None:
    checked = 0
    for e in load_index().entries:
        if e.task != "classification" or not e.labels or not e.outputs or not e.postprocess:
            continue
        out = {o.name: o for o in e.outputs}[e.postprocess.output("output")]
        width = [d for d in out.shape[1:] if isinstance(d, int) and d > 1]
        assert width == [len(labels.load(e.labels))], e.id
        checked += 1
    assert checked > 90


def test_label_file_path(tmp_path) -> None:
    path = tmp_path / "mine.txt"
    path.write_text("cat\ndog\n")
    assert labels.load(str(path)) == ("cat", "dog")
    with pytest.raises(Exception, match="unknown label set"):
        labels.load("no-such-set")


def test_labels_that_do_not_number_the_classes_get_a_note() -> None:
    """`--labels /etc/passwd` on a 1000-class model printed class indices with no word of why."""
    import zoo

    path = str(need(DATA / "models" / "mobilenetv2-12-int8.onnx"))
    few = zoo.load(path, labels=["cat", "dog"])
    assert "the labels given number 2, but the model scores 1000 classes: classes from 2 on show their index" \
        in (few.note or "")
    many = zoo.load(path, labels=[f"c{i}" for i in range(1001)])
    assert "number 1001, but the model scores 1000 classes: the extra labels are never used" in (many.note or "")
    right = zoo.load(path, labels="imagenet1k")
    assert "labels given" not in (right.note or "")

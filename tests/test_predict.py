"""zoo.load / Model.predict / `zoo predict` on real zoo models and real photos from ../shared."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import DATA, json_lines, need, zoo_cli
from onnx import TensorProto, helper
from PIL import Image

import zoo.api as zoo
from zoo.errors import InputError, ZooError
from zoo.index.catalog import load_index
from zoo.store import download

IMAGES = DATA / "images"


def seed(*ids: str) -> None:
    """Put real model files into the (per-test) cache, as `zoo cache import` does."""
    for model_id in ids:
        entry = load_index().resolve(model_id).entry
        download.import_file(entry, entry.file, need(DATA / "models" / entry.file.name))


def observed_top1(model_file: str) -> dict[str, int]:
    index = json.loads(need(DATA / "models" / "index.json").read_text())
    return {k: v["top1"] for k, v in index[model_file]["observed"]["top1"].items()}


@pytest.mark.parametrize("model_id", ["mnist-7", "mnist-8", "mnist-12"])
def test_mnist_digits(model_id: str) -> None:
    seed(model_id)
    model = zoo.load(model_id)
    paths = sorted(need(IMAGES / "digits").glob("mnist_*.jpg"))
    results = model.predict([str(p) for p in paths], topk=1)
    assert [r.predictions[0].index for r in results] == [int(p.stem.split("_")[1]) for p in paths] == [0, 3, 5, 7]


@pytest.mark.parametrize("model_id", ["mobilenetv2-12-int8", "shufflenet-v2-12-int8", "shufflenet-v2-12-qdq"])
def test_imagenet_classifiers_on_photos(model_id: str) -> None:
    seed(model_id)
    expected = observed_top1(f"{model_id}.onnx")
    model = zoo.load(model_id)
    names = ["frog.jpg", "banana.jpg", "goldfish.jpg", "pelican.jpeg"]
    results = model.predict([str(IMAGES / n) for n in names])
    assert [r.predictions[0].index for r in results] == [expected[f"images/{n}"] for n in names]
    assert [r.predictions[0].label for r in results] == ["tree frog", "banana", "goldfish", "pelican"]
    top = results[0].predictions
    assert len(top) == 5 and all(a.score >= b.score for a, b in zip(top, top[1:]))
    assert 0.5 < sum(p.score for p in top) <= 1.0 + 1e-6  # softmaxed once, not twice


def test_model_surface() -> None:
    seed("mobilenetv2-12-int8")
    model = zoo.load("mobilenetv2-int8", providers="cpu")
    assert model.providers == model.session.get_providers() == ["CPUExecutionProvider"]
    assert model.info.id == "mobilenetv2-12-int8" and model.inputs[0].name == "input"
    feeds = model.preprocess(str(IMAGES / "frog.jpg"))
    assert feeds["input"].shape == (1, 3, 224, 224) and feeds["input"].dtype == np.float32
    raw = model.run(feeds)
    assert raw["output"].shape == (1, 1000) and int(raw["output"].argmax()) == 31
    single = model.predict(Image.open(IMAGES / "banana.jpg"))
    assert single.predictions[0].label == "banana" and single.input == "<JpegImageFile>"
    with pytest.raises(InputError, match="expects float32"):
        model.run({"input": feeds["input"].astype(np.float64)})


def test_optimised_session_is_reused_and_agrees(isolated_env: Path) -> None:
    seed("shufflenet-v2-12-int8")
    first = zoo.load("shufflenet-v2-12-int8").predict(str(IMAGES / "goldfish.jpg"))
    assert len(list((isolated_env / "optimized").glob("*.onnx"))) == 1
    second = zoo.load("shufflenet-v2-12-int8").predict(str(IMAGES / "goldfish.jpg"))
    assert [p.index for p in first.predictions] == [p.index for p in second.predictions]
    np.testing.assert_allclose([p.score for p in first.predictions], [p.score for p in second.predictions],
                               rtol=1e-5)


@pytest.mark.parametrize(("model_id", "image", "faces"), [
    ("version-RFB-320", "ultraface_1.jpg", 19), ("version-RFB-640", "ultraface_1.jpg", 19),
    ("version-RFB-320", "ultraface_3.jpg", 16), ("version-RFB-640", "age_gender_bruce.jpg", 1),
    ("version-RFB-640", "goldfish.jpg", 0)])
def test_ultraface_counts_and_boxes_inside(model_id: str, image: str, faces: int) -> None:
    seed(model_id)
    result = zoo.load(model_id).predict(str(IMAGES / image))
    width, height = Image.open(IMAGES / image).size
    assert len(result.predictions) == faces
    for det in result.predictions:
        x1, y1, x2, y2 = det.box
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height and det.label == "face" and det.score > 0.7


def test_super_resolution_triples() -> None:
    seed("super-resolution-10")
    result = zoo.load("super-resolution-10").predict(str(IMAGES / "frog.jpg"))
    width, height = Image.open(IMAGES / "frog.jpg").size  # the whole photo, in tiles: not a 672x672 crop
    assert result.predictions.image.size == (3 * width, 3 * height) and result.predictions.image.mode == "RGB"
    assert result.task == "super-resolution"




def test_cli_predict_acceptance(tmp_path: Path) -> None:
    seed("mobilenetv2-12-int8", "version-RFB-640")
    text = zoo_cli("predict", "mobilenetv2-12-int8", str(IMAGES / "frog.jpg")).stdout
    assert text.splitlines()[1].split()[:3] == ["1.", "tree", "frog"]
    data = json_lines(zoo_cli("predict", "mobilenetv2-12-int8", str(IMAGES / "frog.jpg"), "--json",
                              "--top-k", "3").stdout)
    assert list(data[0]) == ["input", "model", "provider", "task", "predictions"]
    # The score depends on the CPU's int8 kernels (0.979 with AVX2, 0.995 with VNNI): assert what holds on both.
    top = data[0]["predictions"]
    assert (top[0]["index"], top[0]["label"]) == (31, "tree frog") and top[0]["score"] > 0.5
    assert len(top) == 3 and top[0]["score"] >= top[1]["score"] >= top[2]["score"] > 0
    faces = json_lines(zoo_cli("predict", "ultraface", str(IMAGES / "ultraface_3.jpg"), "--json",
                               "--save", str(tmp_path / "out.png")).stdout)
    assert len(faces[0]["predictions"]) == 16 and len(faces[0]["predictions"][0]["box"]) == 4
    assert Image.open(tmp_path / "out.png").size == Image.open(IMAGES / "ultraface_3.jpg").size


@pytest.mark.parametrize(("content", "words"), [(b"", "empty"), (b"hello", "not an image"),
                                                (b"\xff\xd8\xff\xe0" + b"\0" * 20, "cannot")])
def test_cli_predict_bad_image_exits_2(tmp_path: Path, content: bytes, words: str) -> None:
    seed("mnist-8")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(content)
    result = zoo_cli("predict", "mnist-8", str(bad), code=None)
    assert result.exit_code == 2 and str(bad) in result.stderr and words in result.stderr
    assert "Traceback" not in result.output


def unknown_copy(src: Path, dst: Path) -> Path:
    """The same network with a changed doc string: a file no manifest knows by sha256."""
    import onnx

    proto = onnx.load(str(src))
    proto.doc_string = "retrained in-house"
    onnx.save(proto, str(dst))
    return dst


def test_local_model_needs_recipe_then_works(tmp_path: Path) -> None:
    path = unknown_copy(need(DATA / "models" / "mobilenetv2-12-int8.onnx"), tmp_path / "mine.onnx")
    result = zoo_cli("predict", str(path), str(IMAGES / "frog.jpg"), code=None)
    assert result.exit_code == 2 and "--recipe" in result.stderr and "zoo info" in result.stderr
    out = json_lines(zoo_cli("predict", str(path), str(IMAGES / "frog.jpg"), "--recipe", "imagenet",
                             "--labels", "imagenet1k", "--json").stdout)
    assert out[0]["predictions"][0]["label"] == "tree frog" and out[0]["model"] == "mine.onnx"


def test_a_zoo_file_downloaded_by_hand_gets_the_zoo_recipe(tmp_path: Path) -> None:
    """Found by sha256: recipe, labels and postprocessing of the manifest, with a note."""
    path = tmp_path / "mobilenetv2-12-int8.onnx"
    shutil.copy(need(DATA / "models" / "mobilenetv2-12-int8.onnx"), path)
    result = zoo_cli("predict", str(path), str(IMAGES / "frog.jpg"), "--json")
    row = json_lines(result.stdout)[0]
    assert row["model"] == "mobilenetv2-12-int8" and row["predictions"][0]["label"] == "tree frog"
    assert f"note: {path} is zoo model mobilenetv2-12-int8" in result.stderr
    # Hashed once: the second load finds the remembered sha256 (same path, size, mtime, inode).
    records = list((Path(os.environ["ZOO_HOME"]) / "fingerprints").glob("*.json"))
    assert len(records) == 1 and json.loads(records[0].read_text())["sha256"] == zoo.resolve(
        "mobilenetv2-12-int8").sha256
    assert zoo.load(str(path)).entry.id == "mobilenetv2-12-int8"


def iris_model(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    sklearn = pytest.importorskip("sklearn", reason="scikit-learn is in the test extra")
    skl2onnx = pytest.importorskip("skl2onnx", reason="skl2onnx is in the test extra")
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier

    x, y = load_iris(return_X_y=True)
    x = x.astype(np.float32)
    clf = RandomForestClassifier(n_estimators=10, random_state=0).fit(x, y)
    path = tmp_path / "iris.onnx"
    path.write_bytes(skl2onnx.to_onnx(clf, x[:1]).SerializeToString())
    assert sklearn.__version__
    return path, x, clf.predict(x)


def test_sklearn_iris_round_trip(tmp_path: Path) -> None:
    path, x, expected = iris_model(tmp_path)
    model = zoo.load(str(path))
    assert model.task == "tabular"
    rows = model.predict(x[:5])
    assert [int(r.predictions[0].label) for r in rows] == expected[:5].tolist()
    probs = dict(rows[0].predictions[0].probabilities)
    assert set(probs) == {0, 1, 2} and sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
    csv = tmp_path / "rows.csv"
    csv.write_text("sepal_length,sepal_width,petal_length,petal_width\n" +
                   "\n".join(",".join(str(v) for v in row) for row in x[[0, 60, 120]]))
    out = json_lines(zoo_cli("predict", str(path), str(csv), "--json").stdout)
    assert [d["predictions"][0]["label"] for d in out] == expected[[0, 60, 120]].tolist()
    np.save(tmp_path / "rows.npy", x[:2])
    assert len(json_lines(zoo_cli("predict", str(path), str(tmp_path / "rows.npy"), "--json").stdout)) == 2
    with pytest.raises(InputError, match=r"shape \[1, 3\], the model expects \[None, 4\]"):
        model.predict(np.zeros(3, dtype=np.float32))


def test_text_model_runs_raw_and_predict_explains(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in with BERT-SQuAD's exact IO, registered through a user manifest."""
    entry = load_index().resolve("bertsquad-10").entry
    types = {"tensor(int64)": TensorProto.INT64, "tensor(float)": TensorProto.FLOAT}
    ins = [helper.make_tensor_value_info(i.name, types[i.type], list(i.shape)) for i in entry.inputs]
    outs = [helper.make_tensor_value_info(o.name, types[o.type], list(o.shape)) for o in entry.outputs]
    nodes = [helper.make_node("Cast", ["input_ids:0"], ["unstack:0"], to=TensorProto.FLOAT),
             helper.make_node("Cast", ["input_mask:0"], ["unstack:1"], to=TensorProto.FLOAT),
             helper.make_node("Identity", ["unique_ids_raw_output___9:0"], ["unique_ids:0"]),
             helper.make_node("Identity", ["segment_ids:0"], ["unused"])]
    graph = helper.make_graph(nodes, "bert-standin", ins, outs)
    path = tmp_path / "bert-standin-10.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 10)], ir_version=8), path)
    import hashlib

    data = path.read_bytes()
    doc = entry.to_dict() | {"id": "bert-standin-10", "aliases": [], "hub_name": "BERT stand-in",
                             "file": {"path": "private/bert-standin-10.onnx", "size": len(data),
                                      "sha256": hashlib.sha256(data).hexdigest()}}
    (tmp_path / "m.json").write_text(json.dumps({"schema_version": 1, "family": "standin", "models": [doc]}))
    monkeypatch.setenv("ZOO_MANIFESTS", str(tmp_path / "m.json"))
    standin = load_index().resolve("bert-standin-10").entry
    download.import_file(standin, standin.file, path)
    model = zoo.load("bert-standin-10")
    ids = np.arange(512, dtype=np.int64).reshape(2, 256)
    out = model.run({"input_ids:0": ids, "input_mask:0": np.ones_like(ids), "segment_ids:0": np.zeros_like(ids),
                     "unique_ids_raw_output___9:0": np.array([7, 8], dtype=np.int64)})
    assert out["unstack:0"][1, 3] == 259.0 and out["unique_ids:0"].tolist() == [7, 8]
    with pytest.raises(ZooError, match="text model: predict\\(\\) needs tokenized inputs") as err:
        model.predict("What is ONNX?")
    assert "input_ids:0" in err.value.hint and "30,522" in err.value.what

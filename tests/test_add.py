"""`zoo add` / `zoo remove`: your own ONNX files as zoo models (issue 16), and the user manifest they write."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import json_lines, zoo_cli
from onnx import TensorProto, helper
from PIL import Image
from servers import FakeHubServer, MirrorServer

import zoo
from zoo.errors import ZooError
from zoo.index import user_manifest
from zoo.index.catalog import load_index, normalize
from zoo.store import cache

IRIS = ("setosa", "versicolor", "virginica")


@pytest.fixture(scope="module")
def iris(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, np.ndarray]:
    """A RandomForest on even iris rows, converted with skl2onnx; odd rows are held back."""
    pytest.importorskip("sklearn", reason="scikit-learn is in the test extra")
    skl2onnx = pytest.importorskip("skl2onnx", reason="skl2onnx is in the test extra")
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier

    x, y = load_iris(return_X_y=True)
    x = x.astype(np.float32)
    clf = RandomForestClassifier(n_estimators=10, random_state=0).fit(x[::2], y[::2])
    path = tmp_path_factory.mktemp("iris") / "rf_iris.onnx"
    path.write_bytes(skl2onnx.to_onnx(clf, x[:1]).SerializeToString())
    held = x[1::2]
    return path, held, clf.predict(held)


def write_csv(path: Path, header: list[str], rows: np.ndarray | list[list[object]]) -> Path:
    path.write_text(",".join(header) + "\n" + "\n".join(",".join(str(v) for v in row) for row in rows) + "\n")
    return path


def add_iris(path: Path) -> None:
    zoo_cli("add", str(path), "--id", "rf-iris", "--task", "tabular-classification", "--labels", ",".join(IRIS))


def test_acceptance_add_predict_info(iris: tuple[Path, np.ndarray, np.ndarray], tmp_path: Path) -> None:
    path, held, expected = iris
    add_iris(path)
    csv = write_csv(tmp_path / "test.csv", ["sepal_length", "sepal_width", "petal_length", "petal_width"], held)
    rows = json_lines(zoo_cli("predict", "rf-iris", str(csv), "--json").stdout)
    assert len(rows) == len(held)
    assert [r["predictions"][0]["index"] for r in rows] == expected.tolist()
    assert [r["predictions"][0]["label"] for r in rows] == [IRIS[i] for i in expected]
    assert set(rows[0]["predictions"][0]["probabilities"]) == set(IRIS)
    info = json.loads(zoo_cli("info", "rf-iris", "--json").stdout)
    graph = onnx.load(str(path))
    assert info["sha256"] == _sha256(path) and info["bytes"] == path.stat().st_size
    assert info["opset"] == next(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx"))
    assert [i["name"] for i in info["inputs"]] == ["X"] and info["inputs"][0]["shape"] == [None, 4]
    assert [o["name"] for o in info["outputs"]] == ["output_label", "output_probability"]
    text = zoo_cli("info", "rf-iris").stdout
    assert _sha256(path) in text and "X [None, 4] tensor(float)" in text


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_python_api_sees_the_new_model_at_once(iris: tuple[Path, np.ndarray, np.ndarray]) -> None:
    path, held, expected = iris
    assert "rf-iris" not in load_index().by_id  # parsed (and cached) before the add
    result = zoo.add(path, "rf-iris", labels=list(IRIS))
    assert result.entry.id == "rf-iris" and result.path.is_file() and not result.replaced
    assert result.manifest == user_manifest.default_path() == cache.home() / "manifests" / "user.json"
    predicted = zoo.load("rf-iris").predict(held[:5])
    assert [p.predictions[0].index for p in predicted] == expected[:5].tolist()
    assert zoo.add(path, "rf-iris").replaced  # the same id again replaces its own entry
    assert len(user_manifest.read(result.manifest)["models"]) == 1


def test_mirror_carries_the_user_manifest_to_a_fresh_home(iris: tuple[Path, np.ndarray, np.ndarray],
                                                          tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, held, expected = iris
    add_iris(path)
    dest = tmp_path / "mirror"
    zoo_cli("mirror", "export", str(dest), "rf-iris")
    files = {p.relative_to(dest).as_posix(): p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    assert "zoo-manifest.json" in files and "user/rf-iris/rf-iris.onnx" in files
    with MirrorServer(files) as server:
        import requests

        team = tmp_path / "team.json"
        team.write_bytes(requests.get(f"{server.url}/zoo-manifest.json", timeout=10).content)
        monkeypatch.setenv("ZOO_HOME", str(tmp_path / "fresh-home"))
        monkeypatch.setenv("ZOO_MANIFESTS", str(team))
        pulled = Path(zoo_cli("pull", "rf-iris", "--mirror", server.url, "-q").stdout.strip())
        assert pulled.is_file() and pulled.read_bytes() == path.read_bytes()
        assert [g.path for g in server.gets()] == ["zoo-manifest.json", "user/rf-iris/rf-iris.onnx"]
    csv = write_csv(tmp_path / "t.csv", ["a", "b", "c", "d"], held[:4])
    rows = json_lines(zoo_cli("predict", "rf-iris", str(csv), "--json").stdout)
    assert [r["predictions"][0]["label"] for r in rows] == [IRIS[i] for i in expected[:4]]


def test_a_model_you_added_is_never_asked_of_hugging_face(iris: tuple[Path, np.ndarray, np.ndarray],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Its name would go to a third party, and the file is not there: only the user's mirrors are tried."""
    path, _, _ = iris
    add_iris(path)
    cached = cache.cached_path(load_index().resolve("rf-iris").entry)
    assert cached is not None
    zoo_cli("cache", "rm", "rf-iris", "--yes")
    with FakeHubServer({"onnxmodelzoo/rf-iris": {"rf-iris.onnx": path.read_bytes()}}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        failed = zoo_cli("pull", "rf-iris", code=3)
        assert hub.requests == []
        assert "could not download rf-iris" in failed.stderr and "looked for on your mirrors only" in failed.stderr
        sources = json.loads(zoo_cli("info", "rf-iris", "--json").stdout)["sources"]
        assert sources == []
    with MirrorServer({"user/rf-iris/rf-iris.onnx": path.read_bytes()}) as mirror:  # a mirror brings it back
        pulled = Path(zoo_cli("pull", "rf-iris", "--mirror", mirror.url, "-q").stdout.strip())
        assert pulled.read_bytes() == path.read_bytes() and hub.requests == []


def test_remove_undoes_add(iris: tuple[Path, np.ndarray, np.ndarray]) -> None:
    path, _, _ = iris
    add_iris(path)
    cached = cache.cached_path(load_index().resolve("rf-iris").entry)
    assert cached is not None
    out = json.loads(zoo_cli("remove", "rf-iris", "--json").stdout)
    assert out["id"] == "rf-iris" and out["deleted"]
    assert not cached.exists() and "rf-iris" not in load_index().by_id
    assert user_manifest.read(user_manifest.default_path())["models"] == []
    again = zoo_cli("remove", "rf-iris", code=2)
    assert "not in the user manifest" in again.stderr and "hint:" in again.stderr
    builtin = zoo_cli("remove", "mnist-8", code=2)
    assert "built-in models are never removed" in builtin.stderr


def _hub_name_only() -> str:
    """A built-in hub name that is neither an id nor an alias, with its spaces (ids cannot have spaces)."""
    index = load_index()
    taken = {normalize(n) for e in index.entries for n in (e.id, *e.aliases)}
    return next(e.hub_name for e in index.entries if normalize(e.hub_name) not in taken)


@pytest.mark.parametrize("name", ["mnist-8", "ResNet50", "hub"])
def test_id_colliding_with_a_builtin_name_exits_2(iris: tuple[Path, np.ndarray, np.ndarray], name: str) -> None:
    path, _, _ = iris
    model_id = "".join(_hub_name_only().split()) if name == "hub" else name
    result = zoo_cli("add", str(path), "--id", model_id, code=2)
    assert "is taken" in result.stderr and "hint: choose an id of your own" in result.stderr
    assert not user_manifest.default_path().exists() and not (cache.home() / "models" / model_id).exists()


def test_not_onnx_and_bad_ids_exit_2(tmp_path: Path, iris: tuple[Path, np.ndarray, np.ndarray]) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00\x01 this is not a protobuf" * 10)
    result = zoo_cli("add", str(junk), "--id", "junk", code=2)
    assert "is not a valid ONNX model" in result.stderr and "hint:" in result.stderr
    text = tmp_path / "notes.onnx"
    text.write_text("hello")
    assert "is not a valid ONNX model" in zoo_cli("add", str(text), "--id", "notes", code=2).stderr
    bad = zoo_cli("add", str(iris[0]), "--id", "bad..id", code=2)
    assert "must not contain '..'" in bad.stderr
    assert not user_manifest.default_path().exists()


def test_csv_with_missing_or_extra_columns_exits_2(iris: tuple[Path, np.ndarray, np.ndarray], tmp_path: Path) -> None:
    path, held, _ = iris
    add_iris(path)
    three = write_csv(tmp_path / "three.csv", ["a", "b", "c"], held[:2, :3])
    result = zoo_cli("predict", "rf-iris", str(three), "--json", code=2)
    row = json_lines(result.stdout)[0]
    assert "has 3 columns (a, b, c); the model's input 'X' takes 4" in row["error"] and row["hint"]
    five = write_csv(tmp_path / "five.csv", list("abcde"), np.hstack([held[:2], held[:2, :1]]))
    assert "has 5 columns" in json_lines(zoo_cli("predict", "rf-iris", str(five), "--json", code=2).stdout)[0]["error"]


def tiny_image_model(path: Path, *, channels_last: bool = True, size: int = 8) -> Path:
    """Mean colour -> 2 classes: [N, 8, 8, 3] (NHWC) or [N, 3, 8, 8] -> softmax of (red - blue, blue - red)."""
    shape = [None, size, size, 3] if channels_last else [None, 3, size, size]
    nodes = [helper.make_node("Transpose", ["image"], ["nchw"], perm=[0, 3, 1, 2])] if channels_last else []
    src = "nchw" if channels_last else "image"
    weights = helper.make_tensor("w", TensorProto.FLOAT, [3, 2], [8.0, -8.0, 0.0, 0.0, -8.0, 8.0])
    nodes += [helper.make_node("GlobalAveragePool", [src], ["pooled"]),
              helper.make_node("Flatten", ["pooled"], ["flat"]),
              helper.make_node("MatMul", ["flat", "w"], ["logits"]),
              helper.make_node("Softmax", ["logits"], ["probs"], axis=1)]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("image", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [None, 2])], [weights])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), path)
    return path


def nhwc_recipe(size: int = 8, order: str = "RGB") -> dict[str, object]:
    return {"kind": "image", "input": "image", "resize": {"method": "stretch", "size": [size, size]},
            "interpolation": "bilinear", "scale": 1 / 255, "channel_order": order, "layout": "NHWC",
            "dtype": "float32"}


def test_image_model_with_recipe_json_predicts_from_files(tmp_path: Path) -> None:
    model = tiny_image_model(tmp_path / "tiny.onnx")
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps(nhwc_recipe()))
    out = json.loads(zoo_cli("add", str(model), "--id", "tiny-colours", "--recipe-json", str(recipe), "--labels",
                             "red,blue", "--postprocess", "already-probabilities-topk", "--json").stdout)
    assert out["preprocess"]["layout"] == "NHWC" and out["preprocess"]["scale"] == pytest.approx(1 / 255)
    for colour, name in (((250, 10, 10), "red"), ((10, 10, 250), "blue")):
        Image.new("RGB", (32, 20), colour).save(tmp_path / f"{name}.png")
    rows = json_lines(zoo_cli("predict", "tiny-colours", str(tmp_path / "red.png"), str(tmp_path / "blue.png"),
                              "--json").stdout)
    assert [r["predictions"][0]["label"] for r in rows] == ["red", "blue"]


@pytest.mark.parametrize(("recipe", "words"), [
    (nhwc_recipe(size=16), "the recipe makes 16x16 images, the input takes 8x8"),
    (nhwc_recipe(order="GRAY"), "GRAY gives 1 channel(s) on axis 3, the input has 3"),
    ({**nhwc_recipe(), "layout": "NCHW"}, "on axis 1, the input has 8"),
    ({**nhwc_recipe(), "dtype": "uint8"}, "dtype uint8 is tensor(uint8), the input is tensor(float)"),
    ({**nhwc_recipe(), "input": "pixels"}, "the recipe's input 'pixels' is not an input of the graph"),
])
def test_recipe_that_does_not_fit_the_input_exits_2(tmp_path: Path, recipe: dict[str, object], words: str) -> None:
    model = tiny_image_model(tmp_path / "tiny.onnx")
    (tmp_path / "r.json").write_text(json.dumps(recipe))
    result = zoo_cli("add", str(model), "--id", "tiny", "--recipe-json", str(tmp_path / "r.json"), code=2)
    assert words in result.stderr and "hint:" in result.stderr
    assert not user_manifest.default_path().exists()


def test_bad_recipe_json_and_labels_exit_2(tmp_path: Path) -> None:
    model = tiny_image_model(tmp_path / "tiny.onnx")
    (tmp_path / "r.json").write_text(json.dumps({**nhwc_recipe(), "layuot": "NHWC"}))
    typo = zoo_cli("add", str(model), "--id", "tiny", "--recipe-json", str(tmp_path / "r.json"), code=2)
    assert "did you mean 'layout'" in typo.stderr
    assert f"error: --recipe-json {tmp_path / 'r.json'}, field " in typo.stderr
    assert "ZOO_MANIFESTS" not in typo.stderr  # the hint was about manifest files listed there
    (tmp_path / "ok.json").write_text(json.dumps(nhwc_recipe()))
    three = zoo_cli("add", str(model), "--id", "tiny", "--recipe-json", str(tmp_path / "ok.json"), "--labels", "a,b,c",
                    code=2)
    assert "3 labels given, but output 'probs' has 2 classes" in three.stderr
    named = zoo_cli("add", str(model), "--id", "tiny", "--recipe", "imagenet", code=2)
    assert "the input has 8" in named.stderr  # imagenet is NCHW; this input is NHWC


def test_named_recipe_is_fitted_to_the_input_size(tmp_path: Path) -> None:
    model = tiny_image_model(tmp_path / "tiny.onnx", channels_last=False, size=32)
    out = json.loads(zoo_cli("add", str(model), "--id", "tiny-nchw", "--recipe", "imagenet", "--json").stdout)
    assert out["preprocess"]["resize"]["crop"] == [32, 32] and out["preprocess"]["layout"] == "NCHW"


def test_failing_write_leaves_the_manifest_whole(iris: tuple[Path, np.ndarray, np.ndarray],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    path, _, _ = iris
    add_iris(path)
    manifest = user_manifest.default_path()
    before = manifest.read_bytes()

    real_replace = os.replace

    def full_disk(src: str | Path, dst: str | Path) -> None:  # the manifest's rename fails, nothing else
        if Path(dst) == manifest:
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(ZooError, match=f"cannot write the manifest {manifest}: no space left on device; it is "
                                       "unchanged") as failed:
        zoo.add(path, "rf-iris-2")
    assert failed.value.hint == "free some space and run it again"
    monkeypatch.undo()
    assert manifest.read_bytes() == before
    assert [p.name for p in manifest.parent.iterdir() if p.name.endswith(".tmp")] == []
    with pytest.raises(ValueError, match="refused"):  # a validation that refuses the written temp file
        user_manifest.update(manifest, lambda d: user_manifest.upsert(d, {"id": "x"}), _refuse)
    assert manifest.read_bytes() == before and "rf-iris-2" not in load_index().by_id


def _refuse(tmp: Path) -> None:
    assert tmp.is_file() and json.loads(tmp.read_text())["models"][-1] == {"id": "x"}
    raise ValueError("refused")


_WRITER = """
import sys
from pathlib import Path
from zoo.errors import ZooError
from zoo.index import user_manifest
path = Path(sys.argv[1])
pad = "x" * 4000
for i in range(100000):
    model = {"id": f"m{i % 50}", "pad": pad * (1 + i % 7)}
    user_manifest.update(path, lambda d: user_manifest.upsert(d, model), lambda tmp: None)
    print(i, flush=True)
"""


def test_kill_9_during_writes_never_leaves_half_a_manifest(tmp_path: Path) -> None:
    """A writer rewriting a ~1 MB manifest in a loop is killed at random moments: the file always parses."""
    manifest = tmp_path / "user.json"
    for round_ in range(6):
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(manifest)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        for _ in range(3 + round_ * 4):  # let it finish a few writes, then kill it mid-loop
            proc.stdout.readline()
        time.sleep(0.003 * round_)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        doc = json.loads(manifest.read_text())  # never truncated: the old file or the new one
        assert doc["schema_version"] == 1 and 0 < len(doc["models"]) <= 50
        assert all(m["pad"] and set(m["pad"]) == {"x"} for m in doc["models"])
    user_manifest.update(manifest, lambda d: d, lambda tmp: None)  # the next writer sweeps killed temp files
    assert sorted(p.name for p in tmp_path.iterdir()) == ["user.json", "user.json.lock"]


def test_user_manifest_also_listed_in_zoo_manifests_is_read_once(iris: tuple[Path, np.ndarray, np.ndarray],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    add_iris(iris[0])
    monkeypatch.setenv("ZOO_MANIFESTS", str(user_manifest.default_path().parent))
    assert load_index().resolve("rf-iris").entry.family == "user"


def test_cli_help_stays_light() -> None:
    code = ("import sys; from zoo.cli import cli; from click.testing import CliRunner; "
            "r = CliRunner().invoke(cli, ['add', '--help']); assert r.exit_code == 0, r.output; "
            "heavy = [m for m in ('numpy', 'onnx', 'onnxruntime', 'requests') if m in sys.modules]; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_external_data_model_is_refused_with_a_hint(tmp_path: Path) -> None:
    model = onnx.load(str(tiny_image_model(tmp_path / "tiny.onnx")))
    raw = onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(model.graph.initializer[0]), "w")
    model.graph.initializer[0].CopyFrom(raw)  # only raw_data tensors move to an external file
    onnx.save(model, str(tmp_path / "split.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
              location="split.onnx.data", size_threshold=0)
    result = zoo_cli("add", str(tmp_path / "split.onnx"), "--id", "split", code=2)
    assert "keeps its weights in external data files" in result.stderr and "external_data=False" in result.stderr

"""An added model works everywhere a zoo name does (issue 16): `zoo add --test-inputs` records a test set;
`zoo check`, `zoo bench`, `zoo.hub`, `zoo pull --with-test-data` and `zoo mirror export` take the new id."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import DATA, json_lines, need, zoo_cli
from onnx import numpy_helper
from servers import MirrorServer

from zoo import hub
from zoo.index import user_manifest
from zoo.index.catalog import load_index
from zoo.store import cache
from zoo.store.add import recipe_dict

IRIS = ("setosa", "versicolor", "virginica")
DIGITS = DATA / "images" / "digits"


@pytest.fixture(scope="module")
def iris(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """skl2onnx RandomForests on iris: with ZipMap (the converter's default), without, and on string labels."""
    pytest.importorskip("sklearn", reason="scikit-learn is in the test extra")
    skl2onnx = pytest.importorskip("skl2onnx", reason="skl2onnx is in the test extra")
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier

    x, y = load_iris(return_X_y=True)
    x = x.astype(np.float32)
    folder = tmp_path_factory.mktemp("iris")
    clf = RandomForestClassifier(n_estimators=5, random_state=0).fit(x[::2], y[::2])
    named = RandomForestClassifier(n_estimators=5, random_state=0).fit(x[::2], np.array(IRIS)[y[::2]])
    out = {"zipmap": folder / "rf_zipmap.onnx", "tensors": folder / "rf_tensors.onnx",
           "strings": folder / "rf_strings.onnx"}
    out["zipmap"].write_bytes(skl2onnx.to_onnx(clf, x[:1]).SerializeToString())
    out["tensors"].write_bytes(skl2onnx.to_onnx(clf, x[:1], options={"zipmap": False}).SerializeToString())
    out["strings"].write_bytes(skl2onnx.to_onnx(named, x[:1], options={"zipmap": False}).SerializeToString())
    rows = folder / "rows.csv"
    rows.write_text("a,b,c,d\n" + "\n".join(",".join(str(v) for v in r) for r in x[1::10]) + "\n")
    out["rows"] = rows
    np.save(folder / "more.npy", x[3::25])
    out["more"] = folder / "more.npy"
    return out


@pytest.fixture(scope="module")
def mnist_copy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The real mnist-8 with another doc_string (so no built-in by sha256) and the built-in recipe as JSON."""
    model = onnx.load(str(need(DATA / "models" / "mnist-8.onnx")))
    model.doc_string = "in-house copy of mnist-8 for zoo add tests"
    folder = tmp_path_factory.mktemp("mnist")
    path = folder / "digits.onnx"
    onnx.save(model, str(path))
    recipe = recipe_dict(load_index().resolve("mnist-8").entry.preprocess)  # type: ignore[arg-type]
    recipe.pop("notes", None)
    (folder / "recipe.json").write_text(json.dumps(recipe))
    return path, folder / "recipe.json"


def digits() -> list[str]:
    return [str(p) for p in sorted(need(DIGITS).glob("*.jpg"))[:2]]


def add_digits(mnist_copy: tuple[Path, Path], *extra: str, model_id: str = "house-digits") -> dict:
    path, recipe = mnist_copy
    out = zoo_cli("add", str(path), "--id", model_id, "--recipe-json", str(recipe), "--labels", "mnist10",
                  "--postprocess", "softmax-topk", "--json", *extra)
    return json.loads(out.stdout)


def extracted(model_id: str) -> Path:
    return cache.home() / "models" / model_id / "test_data" / model_id


def tamper(pb: Path) -> None:
    """Change every value of a recorded tensor, keeping its size (so the extraction record still says whole)."""
    tensor = onnx.TensorProto()
    tensor.ParseFromString(pb.read_bytes())
    arr = numpy_helper.to_array(tensor)
    changed = numpy_helper.from_array((arr + 1).astype(arr.dtype), tensor.name).SerializeToString()
    assert len(changed) == pb.stat().st_size
    pb.write_bytes(changed)


def test_recorded_test_set_passes_check_and_tampered_outputs_exit_4(iris: dict[str, Path]) -> None:
    added = json.loads(zoo_cli("add", str(iris["tensors"]), "--id", "rf-tensors", "--labels", ",".join(IRIS),
                               "--test-inputs", str(iris["rows"]), str(iris["more"]), "--json").stdout)
    assert added["recorded"]["sets"] == 2 and added["recorded"]["outputs"] == ["label", "probabilities"]
    assert added["test_data"]["path"] == "user/rf-tensors/rf-tensors.tar.gz"
    entry = user_manifest.read(user_manifest.default_path())["models"][0]
    assert entry["test_data"] == added["recorded"]["test_data"]  # sha256, size and path in the manifest entry
    sets = sorted(p.name for p in extracted("rf-tensors").iterdir())
    assert sets == ["test_data_set_0", "test_data_set_1"]
    recorded_rows = numpy_helper.to_array(onnx.load_tensor(str(extracted("rf-tensors") / sets[1] / "input_0.pb")))
    assert np.array_equal(recorded_rows, np.load(iris["more"]))  # the .npy rows, as predict feeds them
    report = json.loads(zoo_cli("check", "rf-tensors", "--json").stdout)[0]
    assert report["passed"] and len(report["checks"]) == 4
    tamper(extracted("rf-tensors") / "test_data_set_0" / "output_1.pb")
    failed = zoo_cli("check", "rf-tensors", "--json", code=4)
    bad = [c for c in json.loads(failed.stdout)[0]["checks"] if not c["passed"]]
    assert [(c["set"], c["output"]) for c in bad] == [("test_data_set_0", "probabilities")]


def test_zipmap_output_is_left_out_with_a_note(iris: dict[str, Path]) -> None:
    out = zoo_cli("add", str(iris["zipmap"]), "--id", "rf-zipmap", "--test-inputs", str(iris["rows"]), "--json")
    recorded = json.loads(out.stdout)["recorded"]
    assert recorded["outputs"] == ["output_label"] and recorded["skipped_outputs"] == ["output_probability"]
    assert "leaves out output_probability" in out.stderr and "ZipMap" in out.stderr
    report = json.loads(zoo_cli("check", "rf-zipmap", "--json").stdout)[0]
    assert report["passed"] and [c["output"] for c in report["checks"]] == ["output_label"]
    zoo_cli("remove", "rf-zipmap")  # the recorded archive and its extracted sets go with the model
    assert not (cache.home() / "models" / "rf-zipmap").exists()
    assert not cache.blob_path(recorded["test_data"]["sha256"]).exists()


def test_unstorable_output_first_is_refused_and_the_add_undone(iris: dict[str, Path]) -> None:
    zoo_cli("add", str(iris["zipmap"]), "--id", "rf-named")  # an earlier entry of the same id, kept on failure
    before = user_manifest.default_path().read_bytes()
    out = zoo_cli("add", str(iris["strings"]), "--id", "rf-named", "--test-inputs", str(iris["rows"]), code=2)
    assert "no output is a numeric tensor" not in out.stderr  # the string label comes first, a tensor after it
    assert "comes before output 'probabilities'" in out.stderr and "zipmap" in out.stderr
    assert user_manifest.default_path().read_bytes() == before
    out = zoo_cli("add", str(iris["strings"]), "--id", "rf-new", "--test-inputs", str(iris["rows"]), code=2)
    assert "rf-new" not in load_index().by_id  # a new id is taken out again
    assert zoo_cli("info", "rf-new", code=2).exit_code == 2


def test_bad_test_inputs_exit_2_before_anything_is_written(iris: dict[str, Path], tmp_path: Path) -> None:
    model = str(iris["tensors"])
    cases = [
        ((model, str(iris["rows"]), "--id", "x1"), "without --test-inputs"),
        ((model, "--id", "x1", "--test-inputs"), "needs inputs"),
        ((model, "--id", "x1", "--test-inputs", str(tmp_path / "absent.csv")), "is not a file"),
        ((model, "--id", "x1", "--manifest", str(tmp_path / "team.json"), "--test-inputs", str(iris["rows"])),
         "ZOO_MANIFESTS"),
    ]
    for args, words in cases:
        out = zoo_cli("add", *args, code=2)
        assert words in out.stderr and "hint:" in out.stderr
    assert not user_manifest.default_path().exists() and not (tmp_path / "team.json").exists()


def test_re_adding_with_new_inputs_replaces_the_extracted_set(iris: dict[str, Path]) -> None:
    zoo_cli("add", str(iris["tensors"]), "--id", "rf-again", "--test-inputs", str(iris["rows"]))
    zoo_cli("add", str(iris["tensors"]), "--id", "rf-again", "--test-inputs", str(iris["more"]))
    got = numpy_helper.to_array(onnx.load_tensor(str(extracted("rf-again") / "test_data_set_0" / "input_0.pb")))
    assert np.array_equal(got, np.load(iris["more"]))
    assert json.loads(zoo_cli("check", "rf-again", "--json").stdout)[0]["passed"]


def test_image_model_without_recipe_is_refused_and_undone(mnist_copy: tuple[Path, Path]) -> None:
    out = zoo_cli("add", str(mnist_copy[0]), "--id", "no-recipe", "--test-inputs", *digits(), code=2)
    assert "recipe" in out.stderr and "no-recipe" not in load_index().by_id


def test_real_model_re_added_checks_benches_and_loads_through_hub(mnist_copy: tuple[Path, Path],
                                                                   tmp_path: Path) -> None:
    added = add_digits(mnist_copy, "--test-inputs", *digits())
    assert added["sha256"] != load_index().resolve("mnist-8").entry.sha256
    assert added["recorded"]["sets"] == 2
    report = json.loads(zoo_cli("check", "house-digits", "--json").stdout)[0]
    assert report["passed"] and report["model"] == "house-digits"
    # The same digits through predict agree with the recorded outputs' top-1 (prepared the same way).
    rows = json_lines(zoo_cli("predict", "house-digits", *digits(), "--json").stdout)
    assert [r["predictions"][0]["index"] for r in rows] == [c["top1_expected"] for c in report["checks"]]
    # --test-data DIR: a copy of the recorded sets passes; the copy tampered fails.
    copy = tmp_path / "sets"
    shutil.copytree(extracted("house-digits"), copy)
    assert json.loads(zoo_cli("check", "house-digits", "--test-data", str(copy), "--json").stdout)[0]["passed"]
    tamper(copy / "test_data_set_1" / "output_0.pb")
    assert zoo_cli("check", "house-digits", "--test-data", str(copy), code=4).exit_code == 4

    bench = json.loads(zoo_cli("bench", "house-digits", "--runs", "3", "--warmup", "0", "--json").stdout)
    assert bench["model"] == "house-digits" and bench["zoo"]["p50_ms"] > 0 and bench["batch"] == 1

    info = hub.get_model_info("house-digits")
    assert info.id == info.model == "house-digits"  # an added model's hub name is its id (no onnx.hub name)
    assert info.model_sha == added["sha256"] and info.metadata["model_with_data_path"] == added["test_data"]["path"]
    assert [m.id for m in hub.list_models(model="house-digits")] == ["house-digits"]
    assert hub.load("house-digits").doc_string == "in-house copy of mnist-8 for zoo add tests"
    folder = Path(hub.download_model_with_test_data("house-digits"))
    assert sorted(p.name for p in folder.glob("test_data_set_*")) == ["test_data_set_0", "test_data_set_1"]


def test_mirror_carries_added_model_and_test_data_to_a_fresh_home(mnist_copy: tuple[Path, Path], tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    added = add_digits(mnist_copy, "--test-inputs", digits()[0])
    dest = tmp_path / "mirror"
    zoo_cli("mirror", "export", str(dest), "house-digits", "--with-test-data")
    files = {p.relative_to(dest).as_posix(): p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    archive = "user/house-digits/house-digits.tar.gz"
    assert {"zoo-manifest.json", "user/house-digits/house-digits.onnx", archive} <= set(files)
    carried = json.loads(files["zoo-manifest.json"])["models"][0]
    assert carried["test_data"] == added["test_data"]
    with MirrorServer(files) as server:
        team = tmp_path / "team.json"
        team.write_bytes(files["zoo-manifest.json"])  # what a teammate downloads from the mirror
        monkeypatch.setenv("ZOO_HOME", str(tmp_path / "fresh-home"))
        monkeypatch.setenv("ZOO_MANIFESTS", str(team))
        zoo_cli("pull", "house-digits", "--with-test-data", "--mirror", server.url, "-q")
        assert [g.path for g in server.gets()] == ["user/house-digits/house-digits.onnx", archive]
        report = json.loads(zoo_cli("check", "house-digits", "--json").stdout)[0]
    assert report["passed"] and len(report["checks"]) == 1
    assert cache.home() == (tmp_path / "fresh-home").resolve()

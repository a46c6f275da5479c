"""`zoo check` / Model.check against the zoo's own test sets."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import DATA, need
from servers import MirrorServer

import zoo.api as zoo
from zoo import check
from zoo.cli import cli
from zoo.errors import EXIT_CHECK_FAILED
from zoo.index.catalog import load_index
from zoo.store import download

TESTDATA = DATA / "testdata"


def seed(*ids: str) -> None:
    for model_id in ids:
        entry = load_index().resolve(model_id).entry
        download.import_file(entry, entry.file, need(DATA / "models" / entry.file.name))


def run(*args: str, code: int = 0):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


def test_mnist_8_passes_all_three_sets() -> None:
    seed("mnist-8")
    data = json.loads(run("check", "mnist-8", "--test-data", str(need(TESTDATA / "mnist-8")), "--json").stdout)
    assert data[0]["passed"] is True and [c["set"] for c in data[0]["checks"]] == [
        "test_data_set_0", "test_data_set_1", "test_data_set_2"]
    assert all(c["mode"] == "allclose" and c["max_abs_diff"] < 0.01 for c in data[0]["checks"])
    table = run("check", "mnist-8", "--test-data", str(TESTDATA / "mnist-8")).stdout
    assert "mnist-8 on CPUExecutionProvider vs test data: PASS" in table and table.count("pass") == 3


def test_int8_model_passes_by_top1() -> None:
    seed("shufflenet-v2-12-int8")
    report = zoo.load("shufflenet-v2-12-int8").check(need(TESTDATA / "shufflenet-v2-12-int8"))
    assert report.passed and [c.mode for c in report.checks] == ["quantized"]
    first = report.checks[0]
    assert first.top1_expected == first.top1_got and first.failed == ()
    # Information, not a bound: the difference in quantization steps of the output (scale 0.1724).
    assert first.quant_steps == pytest.approx(first.max_abs_diff / 0.17240001261234283, abs=0.1)
    assert first.rank_correlation is not None and first.rank_correlation >= check.QUANT_MIN_RANK_CORRELATION


def test_legacy_npz_sets_are_read() -> None:
    seed("mnist-12")
    report = zoo.load("mnist-12").check(need(TESTDATA / "mnist-legacy-npz"))
    assert report.passed and [(c.mode, c.top1_expected) for c in report.checks] == [
        ("labels", 5), ("labels", 0), ("labels", 4)]


def test_wrong_model_for_the_data_fails_with_exit_4() -> None:
    seed("mobilenetv2-12-int8")
    result = run("check", "mobilenetv2-12-int8", "--test-data", str(need(TESTDATA / "shufflenet-v2-12-int8")),
                 code=EXIT_CHECK_FAILED)
    assert "FAIL" in result.stdout
    # Which bound failed, with its values.
    assert "top-1 agrees on 0/1 rows" in result.stdout and "rank correlation" in result.stdout


def test_swapped_expected_outputs_fail(tmp_path: Path) -> None:
    seed("mnist-8")
    src = need(TESTDATA / "mnist-8")
    for i, j in ((0, 1), (1, 0)):
        d = tmp_path / f"test_data_set_{i}"
        d.mkdir()
        shutil.copy(src / f"test_data_set_{i}" / "input_0.pb", d / "input_0.pb")
        shutil.copy(src / f"test_data_set_{j}" / "output_0.pb", d / "output_0.pb")
    report = zoo.load("mnist-8").check(tmp_path)
    assert not report.passed and all(not c.passed for c in report.checks)


def test_inputs_that_do_not_fit_exit_2_and_missing_outputs_explain() -> None:
    seed("mnist-8")
    result = run("check", "mnist-8", "--test-data", str(need(TESTDATA / "shufflenet-v2-12-int8")), code=2)
    assert "shape" in result.stderr and "Input3" in result.stderr
    result = run("check", "mnist-8", "--test-data", str(TESTDATA / "super-resolution-10"), code=2)
    assert "no output_*.pb" in result.stderr


def test_compare_modes() -> None:
    exp = np.array([[0.1, 0.7, 0.2]], dtype=np.float32)
    assert check.compare("s", "o", exp + 5e-5, exp, "allclose").passed
    assert not check.compare("s", "o", exp + 1e-2, exp, "allclose").passed
    worse = check.compare("s", "o", exp + 1e-2, exp, "allclose")
    assert worse.failed == ("max |diff| 0.01 beyond atol 0.0001 + rtol 0.001 * |expected|",)
    # Quantized: a large shift that keeps the order passes (kernels differ by tens of steps) ...
    shifted = check.compare("s", "o", exp + 3.0, exp, "quantized", scale=0.5)
    assert shifted.passed and shifted.quant_steps == 6.0 and shifted.rank_correlation == 1.0
    # ... a different top-1 or a scrambled order does not, and each failed bound is named.
    assert check.compare("s", "o", np.array([[0.8, 0.1, 0.2]]), exp, "quantized").failed[0].startswith(
        "top-1 agrees on 0/1 rows")
    logits = np.arange(10, dtype=np.float32)[None]
    scrambled = check.compare("s", "o", np.array([[3, 1, 7, 0, 2, 8, 5, 4, 6, 9]], np.float32), logits, "quantized")
    assert scrambled.failed == (f"rank correlation {scrambled.rank_correlation:.3f} < 0.80",)
    # Every row of a batch counts, not only the first.
    batch = np.array([[0.1, 0.7, 0.2], [0.9, 0.05, 0.05]], np.float32)
    assert not check.compare("s", "o", batch[[0, 0]], batch, "quantized").passed
    assert not check.compare("s", "o", np.zeros(4), exp, "allclose").passed


def archive_of(folder: Path, top: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(folder, arcname=top)
    return buf.getvalue()


def test_check_pulls_and_extracts_test_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """End to end: a model whose manifest names a test-data archive, served by a loopback mirror."""
    model = need(DATA / "models" / "mnist-8.onnx").read_bytes()
    tar = archive_of(need(TESTDATA / "mnist-8"), "mnist-8-copy")
    doc = load_index().resolve("mnist-8").entry.to_dict() | {
        "id": "mnist-8-copy", "aliases": [], "hub_name": "MNIST copy",
        "file": {"path": "private/mnist-8-copy.onnx", "sha256": hashlib.sha256(model).hexdigest(),
                 "size": len(model)},
        "test_data": {"path": "private/mnist-8-copy.tar.gz", "sha256": hashlib.sha256(tar).hexdigest(),
                      "size": len(tar)}}
    (tmp_path / "m.json").write_text(json.dumps({"schema_version": 1, "family": "copy", "models": [doc]}))
    monkeypatch.setenv("ZOO_MANIFESTS", str(tmp_path / "m.json"))
    with MirrorServer({"private/mnist-8-copy.onnx": model, "private/mnist-8-copy.tar.gz": tar}) as server:
        monkeypatch.setenv("ZOO_MIRROR", server.url)
        data = json.loads(run("check", "mnist-8-copy", "--json").stdout)
    assert data[0]["passed"] and len(data[0]["checks"]) == 3
    assert (zoo.test_data_dir(load_index().resolve("mnist-8-copy").entry) / "mnist-8-copy").is_dir()


def test_all_providers_with_only_cpu_says_so() -> None:
    seed("mnist-8")
    result = run("check", "mnist-8", "--all-providers", "--test-data", str(need(TESTDATA / "mnist-8")))
    assert "no provider other than CPU" in result.stderr


# -- malformed test sets: exit 2 with the reason, never 1 -------------------------------------------------


def plus_one(path: Path) -> Path:
    """y = x + 1 on float [1, 4]: a real model for test sets built here."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Add", ["x", "c"], ["y"])], "plus",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor("c", TensorProto.FLOAT, [1], [1.0])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), path)
    return path


def pb(arr: np.ndarray) -> bytes:
    from onnx import numpy_helper

    return numpy_helper.from_array(arr).SerializeToString()


def declared(dims: list[int], *, external: str | None = None) -> bytes:
    """A float TensorProto that declares `dims` and holds no data (or points at external data)."""
    from onnx import TensorProto

    t = TensorProto(data_type=TensorProto.FLOAT, dims=dims, name="x")
    if external is not None:
        t.data_location = TensorProto.EXTERNAL
        entry = t.external_data.add()
        entry.key, entry.value = "location", external
    return t.SerializeToString()


X = np.zeros((1, 4), np.float32)
GOOD_IN, GOOD_OUT = pb(X), pb(X + 1)
MALFORMED = {
    "truncated-pb": ({"input_0.pb": GOOD_IN[: len(GOOD_IN) // 2], "output_0.pb": GOOD_OUT}, "input_0.pb"),
    "garbage-pb": ({"input_0.pb": b"\xff" * 40, "output_0.pb": GOOD_OUT}, "not a readable TensorProto"),
    "named-wrong": ({"input_a.pb": GOOD_IN, "output_0.pb": GOOD_OUT}, "input_a.pb"),
    "numbering-gap": ({"input_0.pb": GOOD_IN, "input_2.pb": GOOD_IN, "output_0.pb": GOOD_OUT}, "numbered [0, 2]"),
    "no-inputs": ({"output_0.pb": GOOD_OUT}, "has no input_*.pb"),
    "no-outputs": ({"input_0.pb": GOOD_IN}, "no output_*.pb"),
    "huge-dims": ({"input_0.pb": declared([100000, 100000, 100000]), "output_0.pb": GOOD_OUT},
                  "1000000000000000 values"),
    "negative-dims": ({"input_0.pb": declared([1, -4]), "output_0.pb": GOOD_OUT}, "negative dims"),
    "external-data": ({"input_0.pb": declared([1, 4], external="../../../../etc/passwd"), "output_0.pb": GOOD_OUT},
                      "external data"),
    "wrong-dtype": ({"input_0.pb": pb(np.zeros((1, 4), np.int64)), "output_0.pb": GOOD_OUT}, "dtype int64"),
    "wrong-shape": ({"input_0.pb": pb(np.zeros((2, 9), np.float32)), "output_0.pb": GOOD_OUT}, "shape [2, 9]"),
    "data-vs-dims": ({"input_0.pb": pb(X)[:-4] + b"", "output_0.pb": GOOD_OUT}, "input_0.pb"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_test_sets_exit_2_with_the_reason(tmp_path: Path, case: str) -> None:
    files, reason = MALFORMED[case]
    folder = tmp_path / "data" / "test_data_set_0"
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    result = CliRunner().invoke(cli, ["check", str(plus_one(tmp_path / "plus.onnx")), "--test-data",
                                      str(tmp_path / "data")], catch_exceptions=False)
    assert result.exit_code == 2, result.output
    assert "error: " in result.stderr and reason in result.stderr and "Traceback" not in result.stderr


def test_a_broken_npz_exits_2(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "test_data_0.npz").write_bytes(b"PK\x03\x04 not a zip")
    result = CliRunner().invoke(cli, ["check", str(plus_one(tmp_path / "plus.onnx")), "--test-data",
                                      str(tmp_path / "data")], catch_exceptions=False)
    assert result.exit_code == 2 and "cannot read test set" in result.stderr, result.output


def test_a_good_set_built_here_passes(tmp_path: Path) -> None:
    (tmp_path / "data" / "test_data_set_0").mkdir(parents=True)
    (tmp_path / "data" / "test_data_set_0" / "input_0.pb").write_bytes(GOOD_IN)
    (tmp_path / "data" / "test_data_set_0" / "output_0.pb").write_bytes(GOOD_OUT)
    data = json.loads(run("check", str(plus_one(tmp_path / "plus.onnx")), "--test-data", str(tmp_path / "data"),
                          "--json").stdout)
    assert data[0]["passed"] and len(data[0]["checks"]) == 1


@pytest.mark.parametrize("provider", ["cuda2", "openvin0", "gpu"])
def test_an_unknown_provider_exits_2_with_suggestions(tmp_path: Path, provider: str) -> None:
    result = CliRunner().invoke(cli, ["check", str(plus_one(tmp_path / "plus.onnx")), "--provider", provider,
                                      "--test-data", str(tmp_path)], catch_exceptions=False)
    assert result.exit_code == 2, result.output
    assert f"unknown execution provider '{provider}'" in result.stderr and "zoo providers" in result.stderr


def test_a_known_but_missing_provider_still_falls_back_with_a_warning(tmp_path: Path) -> None:
    (tmp_path / "data" / "test_data_set_0").mkdir(parents=True)
    (tmp_path / "data" / "test_data_set_0" / "input_0.pb").write_bytes(GOOD_IN)
    (tmp_path / "data" / "test_data_set_0" / "output_0.pb").write_bytes(GOOD_OUT)
    result = run("check", str(plus_one(tmp_path / "plus.onnx")), "--provider", "migraphx", "--test-data",
                 str(tmp_path / "data"))
    assert "MIGraphXExecutionProvider not in use" in result.stderr and "PASS" in result.stdout


def test_string_outputs_are_compared_exactly() -> None:
    labels = np.array(["setosa", "virginica"], dtype=object)
    assert check.compare("s", "label", labels.copy(), labels, "allclose").passed
    differ = check.compare("s", "label", np.array(["setosa", "setosa"], dtype=object), labels, "allclose")
    assert differ.failed == ("1 of 2 values differ (compared exactly)",)

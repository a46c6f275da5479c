"""Provider choice, fallback reporting, session options, optimised-model cache, feed checks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import SATURATING_EXACT, saturating_matmul
from onnx import TensorProto, helper

from zoo import runtime
from zoo.errors import InputError, ProviderError
from zoo.runtime import CPU, SessionSpec, create_session, parse_providers, select_providers


def tiny_model(path: Path) -> Path:
    """y = relu(x @ W + b) with x [N, 4] float: a real graph ORT can optimise."""
    w = helper.make_tensor("W", TensorProto.FLOAT, [4, 3], np.arange(12, dtype=np.float32).tolist())
    b = helper.make_tensor("B", TensorProto.FLOAT, [3], [0.5, -100.0, 1.0])
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["m"]), helper.make_node("Add", ["m", "B"], ["a"]),
         helper.make_node("Relu", ["a"], ["y"])],
        "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], [w, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.save(model, path)
    return path


def test_parse_names() -> None:
    assert parse_providers("cuda, TensorRT,cpu") == ["CUDAExecutionProvider", "TensorrtExecutionProvider", CPU]
    assert parse_providers(["openvino"]) == ["OpenVINOExecutionProvider"]
    assert parse_providers(None) is None


def test_env_providers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZOO_PROVIDERS", "dml,cpu")
    assert parse_providers(None) == ["DmlExecutionProvider", CPU]


def test_selection_is_ordered_by_preference() -> None:
    plan = select_providers(None, [CPU, "OpenVINOExecutionProvider", "CUDAExecutionProvider",
                                   "AzureExecutionProvider"])
    assert plan.chosen == ("CUDAExecutionProvider", "OpenVINOExecutionProvider", CPU)
    missing = select_providers(["TensorrtExecutionProvider"], [CPU])
    assert (missing.chosen, missing.missing) == ((CPU,), ("TensorrtExecutionProvider",))


def test_missing_provider_warns_and_report_matches_session(tmp_path: Path) -> None:
    warnings: list[str] = []
    session, rep = create_session(tiny_model(tmp_path / "m.onnx"), SessionSpec(providers=("CUDAExecutionProvider",)),
                                  warn=warnings.append)
    assert rep.used == tuple(session.get_providers())
    assert rep.fell_back == ("CUDAExecutionProvider",)
    assert len(warnings) == 1 and "CUDAExecutionProvider not in use" in warnings[0]


def test_warning_goes_to_stderr(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    create_session(tiny_model(tmp_path / "m.onnx"), SessionSpec(providers=("TensorrtExecutionProvider",)))
    assert "warning: requested execution provider(s) TensorrtExecutionProvider" in capsys.readouterr().err


def test_strict_provider_errors(tmp_path: Path) -> None:
    with pytest.raises(ProviderError, match="CUDAExecutionProvider not in use") as err:
        create_session(tiny_model(tmp_path / "m.onnx"), SessionSpec(providers=("cuda",), strict=True))
    assert "--strict-provider" in err.value.hint


def test_cpu_request_is_quiet(tmp_path: Path) -> None:
    warnings: list[str] = []
    _, rep = create_session(tiny_model(tmp_path / "m.onnx"), SessionSpec(providers=(CPU,)), warn=warnings.append)
    assert warnings == [] and rep.used == (CPU,) and rep.primary == CPU


def test_gpu_policy_falling_back_to_cpu_is_caught(tmp_path: Path) -> None:
    warnings: list[str] = []
    _, rep = create_session(tiny_model(tmp_path / "m.onnx"), SessionSpec(policy="PREFER_GPU"), warn=warnings.append)
    if "CUDAExecutionProvider" in rep.used:
        pytest.skip("this machine has a GPU: the policy did not fall back")
    assert rep.fell_back == ("PREFER_GPU",) and warnings


def sha256_of(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


X = {"x": np.array([[1, 2, 3, 4], [-1, 0, 1, 2]], dtype=np.float32)}
CPU_ONLY = SessionSpec(providers=(CPU,))  # only plain CPU sessions are cached


def graph_name(key: str) -> str:
    return f"{key}.cpu.all.ort{ort.__version__}.{runtime.cpu_kind()}.onnx"


def test_optimised_model_is_cached_with_a_record_and_gives_same_outputs(tmp_path: Path) -> None:
    model = tiny_model(tmp_path / "m.onnx")
    key, cache_dir = sha256_of(model), tmp_path / "opt"
    first, _ = create_session(model, CPU_ONLY, cache_dir=cache_dir, cache_key=key)
    assert sorted(f.name for f in cache_dir.iterdir()) == [graph_name(key), graph_name(key) + ".json"]
    record = json.loads((cache_dir / (graph_name(key) + ".json")).read_text())
    assert record["source_sha256"] == key and record["graph"][0] == (cache_dir / graph_name(key)).stat().st_size
    second, _ = create_session(model, CPU_ONLY, cache_dir=cache_dir, cache_key=key)
    np.testing.assert_array_equal(first.run(None, X)[0], second.run(None, X)[0])
    (cache_dir / graph_name(key)).write_bytes(b"garbage")  # changed after zoo wrote it: not reused, not fatal
    third, _ = create_session(model, CPU_ONLY, cache_dir=cache_dir, cache_key=key)
    np.testing.assert_array_equal(first.run(None, X)[0], third.run(None, X)[0])
    assert not [f for f in cache_dir.iterdir() if f.name.startswith("tmp-")]


@pytest.mark.parametrize("key", ["k", "local-0123456789abcdef0123456789abcdef", "A" * 64, "../" + "a" * 61])
def test_only_a_sha256_key_is_cached(tmp_path: Path, key: str) -> None:
    create_session(tiny_model(tmp_path / "m.onnx"), CPU_ONLY, cache_dir=tmp_path / "opt", cache_key=key)
    assert not (tmp_path / "opt").exists() or list((tmp_path / "opt").iterdir()) == []


def other_model(path: Path) -> Path:
    """Same graph shape as tiny_model, other weights: other answers."""
    w = helper.make_tensor("W", TensorProto.FLOAT, [4, 3], [-1.0] * 12)
    b = helper.make_tensor("B", TensorProto.FLOAT, [3], [5.0, 5.0, 5.0])
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["m"]), helper.make_node("Add", ["m", "B"], ["a"]),
         helper.make_node("Relu", ["a"], ["y"])],
        "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], [w, b])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), path)
    return path


def test_a_graph_planted_under_a_models_key_is_not_run(tmp_path: Path) -> None:
    """Another model's graph copied (with its record) to this model's name: the record's stamp does not match."""
    mine, theirs, cache_dir = tiny_model(tmp_path / "m.onnx"), other_model(tmp_path / "o.onnx"), tmp_path / "opt"
    expected = ort.InferenceSession(str(mine), providers=[CPU]).run(None, X)[0]
    create_session(theirs, CPU_ONLY, cache_dir=cache_dir, cache_key=sha256_of(theirs))
    planted = cache_dir / graph_name(sha256_of(mine))
    shutil.copy(cache_dir / graph_name(sha256_of(theirs)), planted)
    record = json.loads((cache_dir / (graph_name(sha256_of(theirs)) + ".json")).read_text())
    (cache_dir / (planted.name + ".json")).write_text(json.dumps({**record, "source_sha256": sha256_of(mine)}))
    session, _ = create_session(mine, CPU_ONLY, cache_dir=cache_dir, cache_key=sha256_of(mine))
    np.testing.assert_array_equal(session.run(None, X)[0], expected)
    # The record names the model: a graph recorded for another sha256 is not reused either.
    record = json.loads((cache_dir / (planted.name + ".json")).read_text())
    (cache_dir / (planted.name + ".json")).write_text(json.dumps({**record, "source_sha256": "b" * 64}))
    session, _ = create_session(mine, CPU_ONLY, cache_dir=cache_dir, cache_key=sha256_of(mine))
    np.testing.assert_array_equal(session.run(None, X)[0], expected)


def test_a_linked_graph_folder_is_never_written(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "optimized").symlink_to(outside)
    model = tiny_model(tmp_path / "m.onnx")
    session, _ = create_session(model, CPU_ONLY, cache_dir=tmp_path / "home" / "optimized", cache_key=sha256_of(model))
    assert session.run(None, X)[0].shape == (2, 3) and list(outside.iterdir()) == []
    assert "optimised graphs are not being kept" in capsys.readouterr().err


def test_a_link_planted_at_the_graph_name_is_replaced_not_followed(tmp_path: Path) -> None:
    model, cache_dir = tiny_model(tmp_path / "m.onnx"), tmp_path / "opt"
    cache_dir.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (cache_dir / graph_name(sha256_of(model))).symlink_to(victim)
    create_session(model, CPU_ONLY, cache_dir=cache_dir, cache_key=sha256_of(model))
    assert victim.read_text() == "keep me" and not (cache_dir / graph_name(sha256_of(model))).is_symlink()


@pytest.mark.parametrize(("name", "suggestion"), [("cuda2", "cuda"), ("openvin", "openvino"), ("tensort", "tensorrt")])
def test_unknown_provider_is_an_error_with_suggestions(tmp_path: Path, name: str, suggestion: str) -> None:
    with pytest.raises(ProviderError, match=f"unknown execution provider '{name}'") as err:
        create_session(tiny_model(tmp_path / "m.onnx"), SessionSpec(providers=(name,)))
    assert f"did you mean {suggestion}" in err.value.hint and "zoo providers" in err.value.hint
    assert err.value.exit_code == 2


def test_ort_prints_never_reach_stdout(capsys: pytest.CaptureFixture) -> None:
    class LoudOrt:  # what onnxruntime does on a failed load: print() a banner, then raise
        @staticmethod
        def InferenceSession(*args: object, **kwargs: object) -> None:
            print("*************** EP Error ***************")
            raise RuntimeError("failed")

    with pytest.raises(RuntimeError):
        runtime._quiet_session(LoudOrt, b"", None, {})
    assert capsys.readouterr().out == ""


def test_threads_and_bad_level(tmp_path: Path) -> None:
    session, _ = create_session(tiny_model(tmp_path / "m.onnx"), SessionSpec(threads=1, optimization="basic"))
    assert session.get_session_options().intra_op_num_threads == 1
    with pytest.raises(Exception, match="unknown graph optimisation level"):
        create_session(tiny_model(tmp_path / "n.onnx"), SessionSpec(optimization="max"))


def test_unloadable_model_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(Exception, match="onnxruntime cannot load .*bad.onnx"):
        create_session(bad, SessionSpec())


def test_check_feeds_names_expected(tmp_path: Path) -> None:
    session, _ = create_session(tiny_model(tmp_path / "m.onnx"), SessionSpec())
    runtime.check_feeds(session, {"x": np.zeros((2, 4), np.float32)})
    with pytest.raises(InputError, match="dtype float64, the model expects float32") as err:
        runtime.check_feeds(session, {"x": np.zeros((2, 4))})
    assert "x float32 ['N', 4]" in err.value.hint
    with pytest.raises(InputError, match=r"shape \[2, 5\], the model expects \['N', 4\]"):
        runtime.check_feeds(session, {"x": np.zeros((2, 5), np.float32)})
    with pytest.raises(InputError, match="missing \\['x'\\]"):
        runtime.check_feeds(session, {"z": np.zeros((2, 4), np.float32)})


def test_available_lists_cpu_last_with_devices() -> None:
    rows = runtime.available()
    assert rows[-1]["name"] == CPU and [r["rank"] for r in rows] == list(range(1, len(rows) + 1))
    assert any(d["type"] == "CPU" for d in rows[-1]["devices"])


def test_int8_products_are_exact_on_every_cpu_by_default(tmp_path: Path) -> None:
    a = np.full((1, 64), 255, np.uint8)
    session, _ = create_session(saturating_matmul(), SessionSpec())
    assert session.run(None, {"a": a})[0].tolist() == SATURATING_EXACT
    # Through the optimised-graph cache too: the saved graph keeps the exact kernels' weights.
    model = tmp_path / "mmi.onnx"
    model.write_bytes(saturating_matmul())
    key = "e" * 64
    for _ in range(2):
        session, _ = create_session(model, SessionSpec(), cache_dir=tmp_path / "opt", cache_key=key)
        assert session.run(None, {"a": a})[0].tolist() == SATURATING_EXACT
    fast = create_session(model, SessionSpec(exact_int8=False), cache_dir=tmp_path / "opt", cache_key=key)[0]
    # Saturated on x86 without VNNI, exact elsewhere: never anything else.
    assert fast.run(None, {"a": a})[0].tolist() in (SATURATING_EXACT, [[32767 * 32] * 4])
    names = sorted(p.name for p in (tmp_path / "opt").glob("*.onnx"))
    kind = runtime.cpu_kind()
    assert names == [f"{key}.cpu.all.fastint8.ort{ort.__version__}.{kind}.onnx",
                     f"{key}.cpu.all.ort{ort.__version__}.{kind}.onnx"]


def test_cpu_kind_names_the_machine_and_its_features() -> None:
    import platform

    machine, digest = runtime.cpu_kind().rsplit("-", 1)
    assert machine == (platform.machine().lower() or "cpu") and len(digest) == 8 and int(digest, 16) >= 0

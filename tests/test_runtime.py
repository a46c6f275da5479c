"""Provider choice, fallback reporting, session options, optimised-model cache, feed checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
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


def test_optimised_model_is_cached_and_gives_same_outputs(tmp_path: Path) -> None:
    model = tiny_model(tmp_path / "m.onnx")
    cache_dir = tmp_path / "opt"
    x = {"x": np.array([[1, 2, 3, 4], [-1, 0, 1, 2]], dtype=np.float32)}
    spec = SessionSpec(providers=(CPU,))  # only plain CPU sessions are cached
    first, _ = create_session(model, spec, cache_dir=cache_dir, cache_key="k")
    files = list(cache_dir.iterdir())
    assert [f.name for f in files] == [f"k.cpu.all.ort{ort.__version__}.onnx"]
    second, _ = create_session(model, spec, cache_dir=cache_dir, cache_key="k")
    np.testing.assert_array_equal(first.run(None, x)[0], second.run(None, x)[0])
    files[0].write_bytes(b"garbage")  # a broken cached file is dropped, not fatal
    third, _ = create_session(model, spec, cache_dir=cache_dir, cache_key="k")
    np.testing.assert_array_equal(first.run(None, x)[0], third.run(None, x)[0])


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

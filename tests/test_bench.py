"""`zoo bench`: both sides measured, figures present and sane, inputs fit the graph."""

from __future__ import annotations

import json
from pathlib import Path

import onnxruntime as ort
import pytest
from click.testing import CliRunner
from conftest import DATA, need

from zoo import bench
from zoo.cli import cli
from zoo.index.catalog import load_index
from zoo.store import download


def test_random_feeds_fit_declared_inputs() -> None:
    session = ort.InferenceSession(str(need(DATA / "models" / "mobilenetv2-12-int8.onnx")))
    feeds = bench.random_feeds(session, batch=4, seed=1)
    assert feeds["input"].shape == (4, 3, 224, 224) and str(feeds["input"].dtype) == "float32"
    assert session.run(None, feeds)[0].shape == (4, 1000)


def test_bench_cli_json() -> None:
    entry = load_index().resolve("mnist-8").entry
    download.import_file(entry, entry.file, need(DATA / "models" / "mnist-8.onnx"))
    result = CliRunner().invoke(cli, ["bench", "mnist-8", "--runs", "5", "--warmup", "1", "--json"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    for side in ("zoo", "raw_onnxruntime"):
        figures = data[side]
        assert figures["provider"] == "CPUExecutionProvider"
        assert 0 < figures["p50_ms"] <= figures["p90_ms"] <= figures["p99_ms"]
        assert figures["throughput"] > 0 and figures["peak_rss_mb"] > 10 and figures["load_warm_ms"] > 0
    assert set(data["ratio"]) == {"load_cold_ms", "load_warm_ms", "p50_ms", "p90_ms", "p99_ms", "throughput",
                                  "peak_rss_mb"}
    assert data["ratio"]["p50_ms"] == data["zoo"]["p50_ms"] / data["raw_onnxruntime"]["p50_ms"]


def seed(model_id: str) -> None:
    entry = load_index().resolve(model_id).entry
    download.import_file(entry, entry.file, need(DATA / "models" / entry.file.name))


def test_runnable_batch_follows_the_graph() -> None:
    dynamic = ort.InferenceSession(str(need(DATA / "models" / "mobilenetv2-12-int8.onnx")))
    assert bench.runnable_batch(dynamic, 4) == (4, None)
    fixed = ort.InferenceSession(str(need(DATA / "models" / "mnist-8.onnx")))  # Input3: [1, 1, 28, 28]
    batch, why = bench.runnable_batch(fixed, 4)
    assert batch == 1 and "'Input3'" in why and "[1, 1, 28, 28]" in why and "not 4" in why
    assert bench.runnable_batch(fixed, 1) == (1, None)


def test_a_fixed_batch_axis_runs_batch_1_and_says_so() -> None:
    """`zoo bench mnist-8 --batch 4` used to run batch 1 and report 4x the throughput."""
    seed("mnist-8")
    args = ["bench", "mnist-8", "--batch", "4", "--runs", "6", "--warmup", "1"]
    data = json.loads(CliRunner().invoke(cli, [*args, "--json"], catch_exceptions=False).stdout)
    assert (data["batch"], data["batch_requested"]) == (1, 4) and "fixed first axis" in data["batch_note"]
    for side in ("zoo", "raw_onnxruntime"):
        figures = data[side]
        assert figures["batch"] == 1
        # At least half the runs take >= p50, so items/s <= 2 * batch / p50; 4 items claimed per run breaks it.
        assert figures["throughput"] <= 2000 * figures["batch"] / figures["p50_ms"]
    text = CliRunner().invoke(cli, args, catch_exceptions=False).stdout
    assert text.splitlines()[0].startswith("mnist-8: batch 1 (asked for 4: input 'Input3' has a fixed first axis")


def test_a_symbolic_batch_axis_runs_the_batch_asked() -> None:
    seed("mobilenetv2-12-int8")
    result = CliRunner().invoke(cli, ["bench", "mobilenetv2-12-int8", "--batch", "2", "--runs", "3", "--warmup", "0",
                                      "--json"], catch_exceptions=False)
    data = json.loads(result.stdout)
    assert (data["batch"], data["batch_requested"], data["batch_note"]) == (2, 2, None)
    assert data["zoo"]["batch"] == data["raw_onnxruntime"]["batch"] == 2
    assert data["zoo"]["throughput"] <= 2000 * 2 / data["zoo"]["p50_ms"]


def test_a_batch_too_big_for_memory_is_refused_by_the_worker_and_reaches_the_cli() -> None:
    """--batch 100000 of mobilenet is 56 GiB: it crashed with MemoryError (exit 1), and the clear error that
    replaced it first hung the CLI, because the worker process's InputError could not be unpickled."""
    import subprocess
    import sys

    seed("mobilenetv2-12-int8")
    proc = subprocess.run([sys.executable, "-m", "zoo", "bench", "mobilenetv2-12-int8", "--batch", "10000000",
                           "--runs", "1"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "error: --batch 10000000 needs" in proc.stderr and "GiB for the random inputs alone" in proc.stderr
    assert "hint: expected: a smaller --batch" in proc.stderr and "Traceback" not in proc.stderr


def test_a_file_onnxruntime_cannot_load_is_named_as_zoo_predict_names_it(tmp_path: Path) -> None:
    """The raw side, measured first, built its session straight from onnxruntime: its InvalidProtobuf was exit 1."""
    import subprocess
    import sys

    cut = tmp_path / "cut.onnx"
    cut.write_bytes(need(DATA / "models" / "mnist-8.onnx").read_bytes()[:13000])
    proc = subprocess.run([sys.executable, "-m", "zoo", "bench", str(cut), "--runs", "1"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert f"error: onnxruntime cannot load {cut}: " in proc.stderr and "INVALID_PROTOBUF" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the worker through Linux's /proc")
def test_a_killed_bench_leaves_no_worker_running() -> None:
    """kill -9 (or a timeout) of `zoo bench` left its spawned worker running its --runs at full speed, for good."""
    import os
    import signal
    import subprocess
    import sys
    import time

    seed("mnist-8")
    proc = subprocess.Popen([sys.executable, "-m", "zoo", "bench", "mnist-8", "--runs", "1000000000"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    children: list[int] = []
    deadline = time.monotonic() + 60
    while not children and time.monotonic() < deadline:
        time.sleep(0.1)
        children = [int(pid) for pid in os.listdir("/proc") if pid.isdigit() and _parent_of(int(pid)) == proc.pid]
    assert children, "no worker process started"
    time.sleep(1.0)  # the worker is in its timed runs
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in children), f"workers {children} outlived the killed zoo bench"


def _parent_of(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"

"""`zoo bench`: both sides measured, figures present and sane, inputs fit the graph."""

from __future__ import annotations

import json

import onnxruntime as ort
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

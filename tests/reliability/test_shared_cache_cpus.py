"""One cache shared by machines of different CPUs (a network home, a CI cache, a container volume).

A saved optimised graph holds its CPU's choices (NCHWc block sizes, int8 weights converted for
exact kernels), so a graph written on one kind of CPU must never be run on another: each kind
keeps its own, and a graph planted under another kind's name is not read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from conftest import SATURATING_EXACT, saturating_matmul

from zoo import runtime
from zoo.runtime import SessionSpec, create_session

KEY = "c" * 64
EXACT = SATURATING_EXACT


def saturating_model(path: Path) -> Path:
    """u8 x s8 products whose pair sums pass int16: exact only with zoo's exact-int8 session option."""
    path.write_bytes(saturating_matmul())
    return path


def run(model: Path, cache: Path) -> list[list[int]]:
    session, _ = create_session(model, SessionSpec(), cache_dir=cache, cache_key=KEY)
    return session.run(None, {"a": np.full((1, 64), 255, np.uint8)})[0].tolist()


def test_each_cpu_kind_keeps_its_own_graph(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, cache = saturating_model(tmp_path / "m.onnx"), tmp_path / "shared"
    for kind in ("x86_64-0000aaaa", "x86_64-0000bbbb", "x86_64-0000aaaa"):
        monkeypatch.setattr(runtime, "cpu_kind", lambda kind=kind: kind)
        assert run(model, cache) == EXACT
    graphs = sorted(p.name.rsplit(".", 2)[-2] for p in cache.glob("*.onnx"))
    assert graphs == ["x86_64-0000aaaa", "x86_64-0000bbbb"]  # the third load reused the first kind's graph


def test_a_graph_under_another_kinds_name_is_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, cache = saturating_model(tmp_path / "m.onnx"), tmp_path / "shared"
    monkeypatch.setattr(runtime, "cpu_kind", lambda: "x86_64-0000aaaa")
    assert run(model, cache) == EXACT
    theirs = next(cache.glob("*.onnx"))
    theirs.write_bytes(b"not a graph for this CPU")  # what another machine left there, damaged on the way
    monkeypatch.setattr(runtime, "cpu_kind", lambda: "x86_64-0000bbbb")
    assert run(model, cache) == EXACT
    assert theirs.read_bytes() == b"not a graph for this CPU"  # another kind's file is left to its owner
    assert f"ort{ort.__version__}.x86_64-0000bbbb.onnx" in {p.name.split(".cpu.all.")[-1] for p in cache.glob("*.onnx")}

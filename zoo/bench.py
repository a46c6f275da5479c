"""`zoo bench`: load time, latency percentiles, throughput and peak RSS, zoo vs raw onnxruntime.

Each side runs in its own fresh process (so cold loads are cold and peak RSS is
its own), on identical random inputs generated from the graph's declared inputs.
A requested batch runs only where every input's first axis is symbolic; a model
with a fixed batch axis (mnist-8: [1, 1, 28, 28]) runs batch 1, and the result
says so, so throughput always counts the items really run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class BenchSpec:
    """What to measure."""

    model: str  # a zoo name or a local .onnx path
    path: str  # the local file (resolved and pulled by the caller)
    providers: tuple[str, ...] | None
    batch: int = 1
    threads: int | None = None
    warmup: int = 5
    runs: int = 50
    seed: int = 0


@dataclass(frozen=True, slots=True)
class Side:
    """The figures of one side (zoo or raw onnxruntime)."""

    name: str
    provider: str
    load_cold_ms: float
    load_warm_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    throughput: float  # items per second (batch * runs / total time)
    peak_rss_mb: float
    batch: int  # items per run, as really run
    batch_note: str | None = None  # why `batch` is not the requested one

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def runnable_batch(session: Any, requested: int) -> tuple[int, str | None]:
    """The batch the graph allows for `requested`, and why it is not `requested` (None when it is).

    A batch runs only when every input's first axis is symbolic: a fixed first axis
    would make random_feeds keep its size, and the run would be batch 1 reported as N.
    """
    if requested == 1:
        return 1, None
    for meta in session.get_inputs():
        first = meta.shape[0] if meta.shape else None
        if not meta.shape or (isinstance(first, int) and first > 0):
            return 1, (f"input {meta.name!r} has a fixed first axis (shape {list(meta.shape)}): "
                       f"ran batch 1, not {requested}")
    return requested, None


def random_feeds(session: Any, batch: int, seed: int) -> dict[str, Any]:
    """Inputs that fit the graph: symbolic dims -> batch (first) or 1; floats in [0, 1), ints small."""
    import numpy as np

    from zoo.runtime import numpy_dtype

    rng = np.random.default_rng(seed)
    shapes = {meta.name: ([d if isinstance(d, int) and d > 0 else (batch if i == 0 else 1)
                           for i, d in enumerate(meta.shape)], numpy_dtype(meta.type) or "float32")
              for meta in session.get_inputs()}
    _check_fits(sum(int(np.prod(shape)) * np.dtype(dtype).itemsize for shape, dtype in shapes.values()), batch)
    feeds = {}
    for meta in session.get_inputs():
        shape, dtype = shapes[meta.name]
        if dtype.startswith("float"):
            feeds[meta.name] = rng.random(shape, dtype=np.float32).astype(dtype)
        else:
            feeds[meta.name] = rng.integers(0, 2, shape).astype(dtype)
    return feeds


def _check_fits(nbytes: int, batch: int) -> None:
    """Refuse inputs that would take more than half the memory free now (a --batch typo is not a crash)."""
    import os

    from zoo.errors import InputError

    try:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not on Linux: no check
        return
    if nbytes > free // 2:
        raise InputError(f"--batch {batch} needs {nbytes / 2**30:.1f} GiB for the random inputs alone, more than "
                         f"half of the {free / 2**30:.1f} GiB free here", expected=["a smaller --batch"])


def _percentile(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q)) * 1000.0


def _timed_runs(run: Any, feeds: dict[str, Any], spec: BenchSpec) -> tuple[list[float], float]:
    for _ in range(spec.warmup):
        run(feeds)
    times = []
    start = time.perf_counter()
    for _ in range(spec.runs):
        t = time.perf_counter()
        run(feeds)
        times.append(time.perf_counter() - t)
    return times, time.perf_counter() - start


Runner = Callable[[dict[str, Any]], Any]


def _open_zoo(spec: BenchSpec) -> tuple[Any, Runner]:
    from zoo import api

    model = api.load(spec.model, providers=spec.providers, threads=spec.threads)
    return model.session, model.run


def _open_raw(spec: BenchSpec) -> tuple[Any, Runner]:
    import onnxruntime as ort

    from zoo.runtime import EXACT_INT8, load_error, select_providers

    so = ort.SessionOptions()
    so.add_session_config_entry(*EXACT_INT8)  # the same int8 kernels as zoo's session: one job, two callers
    if spec.threads:
        so.intra_op_num_threads = spec.threads
    providers = list(select_providers(spec.providers, ort.get_available_providers()).chosen)
    try:
        session = ort.InferenceSession(spec.path, so, providers=providers)
    except Exception as exc:  # the file zoo would refuse too (raw is measured first): the same error zoo gives
        raise load_error(Path(spec.path), exc) from None
    return session, lambda feeds: session.run(None, feeds)


def measure(side: str, spec: BenchSpec) -> Side:
    """Run one side in this process (called in a fresh child process).

    onnxruntime and numpy are imported before the clock starts on both sides, so
    "cold" is the first session of a process, not the import of its libraries.
    """
    import resource

    import numpy  # noqa: F401
    import onnxruntime  # noqa: F401

    _exit_with_parent()
    open_side = _open_zoo if side == "zoo" else _open_raw
    t = time.perf_counter()
    open_side(spec)
    cold = time.perf_counter() - t
    t = time.perf_counter()
    session, runner = open_side(spec)
    warm = time.perf_counter() - t
    batch, why = runnable_batch(session, spec.batch)
    feeds = random_feeds(session, batch, spec.seed)
    times, total = _timed_runs(runner, feeds, spec)
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return Side(side, session.get_providers()[0], cold * 1000, warm * 1000, _percentile(times, 50),
                _percentile(times, 90), _percentile(times, 99), batch * spec.runs / total, rss_kb / 1024, batch, why)


def _exit_with_parent(interval: float = 0.5) -> None:
    """End this worker once the zoo process that started it is gone (killed, or stopped by a signal
    it could not clean up after): an orphan went on running its --runs at full speed."""
    import os
    import threading

    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, name="zoo-bench-parent-watch", daemon=True).start()


def run(spec: BenchSpec) -> dict[str, Any]:
    """Both sides, each in a fresh process; the ratio zoo/raw for each figure."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    sides = {}
    for side in ("raw", "zoo"):
        with ctx.Pool(1) as pool:
            sides[side] = pool.apply(measure, (side, spec))
    zoo_side, raw = sides["zoo"], sides["raw"]
    ratios = {k: (getattr(zoo_side, k) / getattr(raw, k) if getattr(raw, k) else None)
              for k in ("load_cold_ms", "load_warm_ms", "p50_ms", "p90_ms", "p99_ms", "throughput", "peak_rss_mb")}
    # "batch" is what ran (both sides run the same graph, so the same batch); "batch_requested" what was asked.
    return {"model": spec.model, "batch": zoo_side.batch, "batch_requested": spec.batch,
            "batch_note": zoo_side.batch_note,
            "runs": spec.runs, "warmup": spec.warmup,
            "threads": spec.threads, "zoo": zoo_side.to_dict(), "raw_onnxruntime": raw.to_dict(), "ratio": ratios}

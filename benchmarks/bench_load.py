"""Session load: zoo.load(name) vs onnxruntime.InferenceSession(path) on a cached model.

Warm: in this process, after a first load of each (imports done, zoo's optimised
graph cached), alternating calls, median. Cold: the first load in a fresh Python
process (imports included; zoo with an empty optimised-model cache), median of a
few processes.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from benchmarks._common import (
    INFO,
    Config,
    Row,
    compare,
    environ,
    guarded,
    interleaved,
    median,
    ms,
    paired_ratio,
    ratio_at_most,
    scratch,
    seeded_home,
)

NAME = "load"
MODEL_ID = "mobilenetv2-12-int8"
CPU = ["CPUExecutionProvider"]

COLD_ZOO = """
import time; t = time.perf_counter()
import zoo; zoo.load({model_id!r})
print(time.perf_counter() - t)
"""
COLD_RAW = """
import time; t = time.perf_counter()
import onnxruntime as ort; ort.InferenceSession({path!r}, providers={cpu!r})
print(time.perf_counter() - t)
"""


def run(cfg: Config) -> list[Row]:
    with scratch("load") as work:
        seed = work / "seed"
        _, path = seeded_home(seed, MODEL_ID)
        warm = guarded(f"load {MODEL_ID} (warm)", lambda: _warm(work / "warm", seed, path, cfg.pick(10, 3)))
        cold = guarded(f"load {MODEL_ID} (cold)", lambda: [_cold(work, seed, path, cfg.pick(3, 1))])
    return warm + cold


def _warm(home: Path, seed: Path, path: Path, runs: int) -> list[Row]:
    import onnxruntime as ort

    import zoo

    shutil.copytree(seed, home, symlinks=True)
    with environ(ZOO_HOME=str(home)):
        zoo.load(MODEL_ID)  # the first load imports and writes zoo's optimised graph
        plain = ort.SessionOptions()
        plain.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        optimised = str(next((home / "optimized").glob("*.onnx")))
        fns = {"zoo": lambda: zoo.load(MODEL_ID), "raw": lambda: ort.InferenceSession(str(path), providers=CPU),
               "same": lambda: ort.InferenceSession(optimised, plain, providers=CPU)}
        interleaved(1, fns)
        times = interleaved(runs, fns)
    zoo = median(times["zoo"])
    return [
        compare(f"load {MODEL_ID} (warm)", zoo, median(times["raw"]), ms, ratio_at_most(1.1),
                f"median of {runs} in-process loads after a first one; zoo resolves the name, checks the cache "
                "and opens its cached optimised graph (optimisation off); raw optimises the graph each time",
                ratio=paired_ratio(times["zoo"], times["raw"])),
        compare(f"load {MODEL_ID} (warm, same graph)", zoo, median(times["same"]), ms, INFO,
                "baseline: raw InferenceSession on zoo's cached optimised graph, optimisation off: the "
                "difference is zoo's own work (resolve, cache check, labels, provider report)",
                ratio=paired_ratio(times["zoo"], times["same"])),
    ]


def _cold(work: Path, seed: Path, path: Path, runs: int) -> Row:
    zoo_s, raw_s = [], []
    for n in range(runs):
        home = work / f"cold-{n}"
        shutil.copytree(seed, home, symlinks=True)  # a seeded cache with no optimised graph yet
        zoo_s.append(_child(COLD_ZOO.format(model_id=MODEL_ID), home))
        raw_s.append(_child(COLD_RAW.format(path=str(path), cpu=CPU), home))
    return compare(f"load {MODEL_ID} (cold, first in a process)", median(zoo_s), median(raw_s), ms, INFO,
                   f"median of {runs} fresh processes; imports included; zoo also optimises the graph and "
                   "writes it to its cache; file already in the page cache")


def _child(code: str, home: Path) -> float:
    """Seconds a fresh Python process reports for `code` (it prints them last)."""
    with environ(ZOO_HOME=str(home)):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])

"""Session load: zoo.load(name) vs onnxruntime.InferenceSession(path) on a cached model.

Warm: in this process, after a first load of each (imports done, zoo's optimised
graph cached), alternating calls, median. Cold: the first load in a fresh Python
process, imports included (`import zoo; zoo.load(name)` vs `import onnxruntime;
InferenceSession(path)`), timed by the child from before its first import; processes
take turns. Cold with zoo's optimised graph already cached is every run after the
first; the first ever also optimises the graph and writes it. CPU seconds (user + sys
of the child, as it reports them) are shown beside wall time: on a shared machine they
move less. Bytecode is cached in a temp PYTHONPYCACHEPREFIX, as it is for an installed wheel
(and for onnxruntime's own modules); when this environment sets PYTHONDONTWRITEBYTECODE (zoo's
editable source then compiles in every process), the cold load is also timed that way.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from benchmarks._common import (
    INFO,
    Config,
    Row,
    Target,
    compare,
    environ,
    guarded,
    in_turn,
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
import time; t, c = time.perf_counter(), time.process_time()
import zoo; zoo.load({model_id!r})
print(time.perf_counter() - t, time.process_time() - c)
"""
COLD_RAW = """
import time; t, c = time.perf_counter(), time.process_time()
import onnxruntime as ort; so = ort.SessionOptions(); so.add_session_config_entry("session.x64quantprecision", "1")
ort.InferenceSession({path!r}, so, providers={cpu!r})
print(time.perf_counter() - t, time.process_time() - c)
"""


def run(cfg: Config) -> list[Row]:
    with scratch("load") as work:
        seed = work / "seed"
        _, path = seeded_home(seed, MODEL_ID)
        warm = guarded(f"load {MODEL_ID} (warm)", lambda: _warm(work / "warm", seed, path, cfg.pick(10, 3)))
        cold = guarded(f"load {MODEL_ID} (cold)", lambda: _cold(work, seed, path, cfg.pick(15, 1), cfg.pick(3, 1)))
    return warm + cold


def _warm(home: Path, seed: Path, path: Path, runs: int) -> list[Row]:
    import onnxruntime as ort

    import zoo

    shutil.copytree(seed, home, symlinks=True)
    with environ(ZOO_HOME=str(home)):
        zoo.load(MODEL_ID)  # the first load imports and writes zoo's optimised graph
        plain = ort.SessionOptions()
        plain.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        exact = ort.SessionOptions()
        exact.add_session_config_entry("session.x64quantprecision", "1")  # the same graph work as zoo's load
        optimised = str(next((home / "optimized").glob("*.onnx")))
        fns = {"zoo": lambda: zoo.load(MODEL_ID), "raw": lambda: ort.InferenceSession(str(path), exact, providers=CPU),
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


def _cold(work: Path, seed: Path, path: Path, runs: int, firsts: int) -> list[Row]:
    cached = work / "cold-cached"
    shutil.copytree(seed, cached, symlinks=True)
    codes = {"zoo": COLD_ZOO.format(model_id=MODEL_ID), "raw": COLD_RAW.format(path=str(path), cpu=CPU)}
    bytecode: dict[str, str | None] = {"PYTHONPYCACHEPREFIX": str(work / "pycache"), "PYTHONDONTWRITEBYTECODE": None}
    for code in codes.values():  # writes the optimised graph that later runs reuse, and both sides' bytecode
        _child(code, cached, bytecode)
    got = _turns(codes, cached, runs, bytecode)
    first: list[tuple[float, float]] = []
    for n in range(firsts):
        home = work / f"cold-first-{n}"
        shutil.copytree(seed, home, symlinks=True)  # a seeded cache with no optimised graph yet
        first.append(_child(codes["zoo"], home, bytecode))
    rows = [
        _cold_row(f"load {MODEL_ID} (cold: fresh process, imports included)", got, ratio_at_most(1.2),
                  f"median of {runs} fresh processes per side, taking turns; zoo's optimised graph cached (every "
                  "run after the first); bytecode cached"),
        compare(f"load {MODEL_ID} (cold, first ever: zoo optimises and caches the graph)",
                median([w for w, _ in first]), median([w for w, _ in got["raw"]]), ms, INFO,
                f"median of {firsts} fresh processes, each with a cache holding no optimised graph yet; baseline: "
                "the raw cold load above (it optimises in memory every time and writes nothing)"),
    ]
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        plain = _turns(codes, cached, runs, {})
        rows.append(_cold_row(f"load {MODEL_ID} (cold, PYTHONDONTWRITEBYTECODE=1 inherited)", plain, INFO,
                              f"median of {runs} fresh processes per side, taking turns; no .pyc for zoo's "
                              "editable source: its modules compile in every process (onnxruntime's come "
                              "from site-packages)"))
    return rows


def _turns(codes: dict[str, str], home: Path, runs: int,
           env: dict[str, str | None]) -> dict[str, list[tuple[float, float]]]:
    """(wall, CPU) of `runs` fresh processes per side, taking turns."""
    got: dict[str, list[tuple[float, float]]] = {side: [] for side in codes}
    for n in range(runs):
        for side in in_turn(list(codes), n):
            got[side].append(_child(codes[side], home, env))
    return got


def _cold_row(name: str, got: dict[str, list[tuple[float, float]]], target: Target, how: str) -> Row:
    wall = {side: [w for w, _ in got[side]] for side in got}
    cpu = {side: median([c for _, c in got[side]]) for side in got}
    runs_text = "; ".join(f"{side} " + ", ".join(f"{1000 * w:.0f}" for w in wall[side]) for side in wall)
    return compare(name, median(wall["zoo"]), median(wall["raw"]), ms, target,
                   f"{how}; CPU (user+sys) median: zoo {1000 * cpu['zoo']:.0f} ms, raw {1000 * cpu['raw']:.0f} ms "
                   f"(x{cpu['zoo'] / cpu['raw']:.2f}); file in the page cache; runs ms: {runs_text}")


def _child(code: str, home: Path, env: dict[str, str | None]) -> tuple[float, float]:
    """(wall, CPU) seconds a fresh Python process reports for `code` (it prints them last)."""
    with environ(ZOO_HOME=str(home), **env):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    wall, cpu = out.stdout.strip().splitlines()[-1].split()
    return float(wall), float(cpu)

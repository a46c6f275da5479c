"""Index scaling: `zoo info vgg19-7` with 1,000 and 10,000 extra user models vs with none, fresh processes.

The target (issue 15): with 10,000 extra models, at most 1.5x the time with none, on the
second and later runs (the first run after a manifest change compiles the index once).
The user manifest holds synthetic entries in one file, as a team's generated catalogue
would; `json.load` of that file alone is printed beside it, as the cost a full parse
cannot go below.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import time

from benchmarks._common import INFO, Config, Row, compare, environ, interleaved, median, ms, ratio_at_most, scratch
from benchmarks.bench_startup import zoo_command

NAME = "index"


def user_manifest(count: int) -> dict[str, object]:
    models = [{"id": f"acme-net-{n}", "hub_name": f"Acme net {n}", "aliases": [f"acme-{n}"], "task": "classification",
               "opset": 12, "license": "proprietary",
               "file": {"path": f"private/acme/acme-net-{n}.onnx", "sha256": f"{n:064x}", "size": 1000 + n},
               "inputs": [{"name": "input", "type": "float32", "shape": [1, 3, 224, 224]}],
               "outputs": [{"name": "output", "type": "float32", "shape": [1, 1000]}]}
              for n in range(count)]
    return {"schema_version": 1, "family": "acme", "models": models}


def run(cfg: Config) -> list[Row]:
    sizes = cfg.pick([1000, 10000], [200])
    runs = cfg.pick(7, 2)
    zoo = [*zoo_command(), "info", "vgg19-7"]
    rows: list[Row] = []
    with scratch("index") as work:
        files = {}
        for count in sizes:
            path = work / f"acme-{count}.json"
            path.write_text(json.dumps(user_manifest(count)))
            files[count] = path
        base_env = {"ZOO_HOME": str(work / "zoo"), "PYTHONPYCACHEPREFIX": str(work / "pycache")}
        fns = {"none": _command(zoo, {**base_env, "ZOO_MANIFESTS": None})}
        fns.update({str(n): _command(zoo, {**base_env, "ZOO_MANIFESTS": str(p)}) for n, p in files.items()})
        first = {key: fn() for key, fn in fns.items()}  # compiles each index once (and warms the page cache)
        times = interleaved(runs, fns)
        base = median(times.pop("none"))
        for count in sizes:
            rows.append(compare(f"index: zoo info with {count:,} extra user models", median(times[str(count)]), base,
                                ms, ratio_at_most(1.5) if count >= 10000 else INFO,
                                f"median of {runs}, fresh processes, second and later runs; first run (compiles the "
                                f"index) {first[str(count)] * 1000:.0f} ms; baseline: the built-in index alone"))
            started = time.perf_counter()
            with open(files[count], encoding="utf-8") as handle:
                json.load(handle)
            rows.append(Row(f"index: json.load of the {count:,}-model file alone", ms(time.perf_counter() - started),
                            "—", "—", "—", "—", "what any full parse costs at least, in this process"))
    return rows


def _command(cmd: list[str], env: dict[str, str | None]) -> functools.partial[float]:
    return functools.partial(_timed_run, cmd, env)


def _timed_run(cmd: list[str], env: dict[str, str | None]) -> float:
    with environ(**env):
        started = time.perf_counter()
        proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
        elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()[-300:]}")
    return elapsed


if __name__ == "__main__":
    for row in run(Config(smoke="--smoke" in sys.argv)):
        print(row)

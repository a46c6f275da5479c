"""CLI start-up: wall time of `zoo --help` and `zoo list` vs `python -c pass`, each a fresh process.

The target is absolute: at most 150 ms more than bare Python on the same
interpreter. Runs take turns between the commands; stdout is discarded.
Bytecode is cached in a temp PYTHONPYCACHEPREFIX, as it is for an installed
wheel; when this environment sets PYTHONDONTWRITEBYTECODE (zoo's editable
source then compiles on every start), `zoo list` is also timed that way.
"""

from __future__ import annotations

import functools
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
    interleaved,
    median,
    ms,
    over_baseline_at_most,
    scratch,
)

NAME = "startup"


def zoo_command() -> list[str]:
    """The `zoo` console script beside this interpreter, else `python -m zoo`."""
    script = shutil.which("zoo", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "zoo"]


def run(cfg: Config) -> list[Row]:
    runs, zoo = cfg.pick(10, 3), zoo_command()
    commands = {"zoo --help": [*zoo, "--help"], "zoo list": [*zoo, "list"], "bare": [sys.executable, "-c", "pass"]}
    target = over_baseline_at_most(0.150, "<= bare + 150 ms")
    with scratch("startup") as work:
        cached = {"ZOO_HOME": str(work / "zoo"), "PYTHONPYCACHEPREFIX": str(work / "pycache"),
                  "PYTHONDONTWRITEBYTECODE": None}
        times = _time(commands, runs, cached)
        bare = times.pop("bare")
        rows = [_row(f"start-up: {key}", t, bare, target, commands[key], "bytecode cached")
                for key, t in times.items()]
        if os.environ.get("PYTHONDONTWRITEBYTECODE"):
            plain = _time({"zoo list": commands["zoo list"], "bare": commands["bare"]}, runs,
                          {"ZOO_HOME": str(work / "zoo")})
            rows.append(_row("start-up: zoo list, PYTHONDONTWRITEBYTECODE=1 (inherited)", plain["zoo list"],
                             plain["bare"], INFO, commands["zoo list"],
                             "no .pyc for zoo's editable source: its modules compile on every start"))
    return rows


def _time(commands: dict[str, list[str]], runs: int, env: dict[str, str | None]) -> dict[str, list[float]]:
    with environ(**env):
        fns = {key: functools.partial(subprocess.run, cmd, stdout=subprocess.DEVNULL, check=True)
               for key, cmd in commands.items()}
        interleaved(1, fns)  # warm the page cache and the bytecode cache
        return interleaved(runs, fns)


def _row(name: str, zoo: list[float], bare: list[float], target: Target, command: list[str], how: str) -> Row:
    extra = (median(zoo) - median(bare)) * 1000
    return compare(name, median(zoo), median(bare), ms, target,
                   f"median of {len(zoo)}; +{extra:.1f} ms over `python -c pass`; {how}; ran: {' '.join(command)}")

"""`python -m benchmarks [--smoke] [--only NAME] [--output PATH]`: run the benchmarks, print and write the table.

Full runs write BENCHMARKS.md at the repository root unless --output says
otherwise; --smoke (tiny sizes, few repeats: CI) and --only runs print the
table and write a file only when --output is given. The exit status is 1 when
a measurement failed (its row says "error"), 0 otherwise: a missed target is a
finding, not a failure, and a benchmark whose ../shared data is absent says
"skipped".
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from pathlib import Path

from benchmarks._common import REPO, Config, Row, guarded, scratch
from benchmarks.report import render

MODULES = {
    "download": "benchmarks.bench_download",
    "cache": "benchmarks.bench_cache",
    "load": "benchmarks.bench_load",
    "predict": "benchmarks.bench_predict",
    "batch": "benchmarks.bench_batch",
    "startup": "benchmarks.bench_startup",
    "index": "benchmarks.bench_index",
    "serve": "benchmarks.bench_serve",
}


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0],
                                     epilog="example: python -m benchmarks --smoke --only download")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes and few repeats (< 60 s; CI)")
    parser.add_argument("--only", action="append", choices=sorted(MODULES), metavar="NAME",
                        help=f"run only this benchmark (repeatable): {', '.join(MODULES)}")
    parser.add_argument("--output", type=Path, default=None, metavar="PATH",
                        help="write the Markdown report here (default: BENCHMARKS.md for a full run of everything)")
    return parser.parse_args(argv)


def isolate(home: Path) -> None:
    """Point every cache at a temp dir and every endpoint at loopback, before zoo or huggingface_hub load.

    huggingface_hub reads HF_HOME and HF_ENDPOINT once, at import; the discard port makes any call that
    is not given an explicit endpoint fail at once instead of reaching the internet.
    """
    os.environ.update(ZOO_HOME=str(home / "zoo"), HF_HOME=str(home / "hf"), HF_ENDPOINT="http://127.0.0.1:9",
                      HF_HUB_DISABLE_PROGRESS_BARS="1")
    for name in ("ZOO_MIRROR", "ZOO_MANIFESTS", "ZOO_OFFLINE", "HF_HUB_OFFLINE", "HF_TOKEN", "ZOO_PROVIDERS",
                 "ZOO_DEBUG", "ZOO_TIMEOUT", "ZOO_RETRIES"):
        os.environ.pop(name, None)


def run_one(name: str, cfg: Config) -> list[Row]:
    def measure() -> list[Row]:
        return importlib.import_module(MODULES[name]).run(cfg)

    return guarded(name, measure)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    cfg = Config(smoke=args.smoke)
    names = args.only or list(MODULES)
    rows: list[Row] = []
    started = time.perf_counter()
    with scratch("env") as home:
        isolate(home)
        for name in names:
            print(f"benchmarks: {name} ...", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            rows.extend(run_one(name, cfg))
            print(f"benchmarks: {name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    text = render(rows, cfg, names, time.perf_counter() - started)
    print(text)
    output = args.output or (REPO / "BENCHMARKS.md" if not cfg.smoke and not args.only else None)
    if output is not None:
        output.write_text(text)
        print(f"benchmarks: wrote {output}", file=sys.stderr)
    return 1 if any(row.met == "error" for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())

"""One side of the folder-prediction benchmark, in its own fresh process; prints one JSON line.

    python -m benchmarks.workers.folder zoo MODEL_ID DIR OUT        # `zoo predict MODEL_ID DIR -o OUT -q`
    python -m benchmarks.workers.folder api MODEL_ID DIR OUT --threads 1 --spinning 0 --workers 2
    python -m benchmarks.workers.folder pool|naive MODEL.onnx DIR OUT --labels LABELS.txt
    python -m benchmarks.workers.folder costs MODEL.onnx DIR -     # CPU seconds per image: decode, inference

Timed from just before the work starts (the zoo command, or the hand-written session
being built) to the last row written; interpreter start and the heavy imports are
outside every side's span (zoo's are done before its clock starts too).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np  # noqa: F401 - imported before the clock starts, on every side
import onnxruntime  # noqa: F401
from PIL import Image  # noqa: F401


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("zoo", "api", "pool", "naive", "costs"))
    parser.add_argument("model")
    parser.add_argument("folder")
    parser.add_argument("out")
    parser.add_argument("--labels", default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--spinning", type=int, default=None)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--limit", type=int, default=None, help="only the first N images")
    args = parser.parse_args()
    paths = sorted(str(p) for p in Path(args.folder).iterdir() if p.suffix == ".jpg")[: args.limit]
    if args.mode == "costs":
        print(json.dumps(costs(args.model, paths)))
        return
    start, cpu = time.perf_counter(), time.process_time()
    done = run(args, paths)
    seconds = time.perf_counter() - start
    print(json.dumps({"images": done, "seconds": seconds, "rate": done / seconds,
                      "cpu": time.process_time() - cpu}))


def run(args: argparse.Namespace, paths: list[str]) -> int:
    from benchmarks.workers import handwritten

    if args.mode == "zoo":
        from zoo.cli import cli

        argv = ["predict", args.model, args.folder, "-o", args.out, "-q"]
        if args.limit:
            raise SystemExit("zoo mode runs the whole folder, as the command does: no --limit")
        cli.main(argv, prog_name="zoo", standalone_mode=False)
        return len(paths)
    if args.mode == "api":
        return api(args, paths)
    labels = Path(args.labels).read_text().splitlines()
    loop = handwritten.pool_loop if args.mode == "pool" else handwritten.naive_loop
    return loop(args.model, paths, labels, args.out)


def api(args: argparse.Namespace, paths: list[str]) -> int:
    """Model.predict_iter + ResultWriter with explicit settings (None: zoo's defaults)."""
    import zoo
    from zoo.batch import ResultWriter

    spinning = None if args.spinning is None else bool(args.spinning)
    model = zoo.load(args.model, threads=args.threads, spinning=spinning)
    writer, n = ResultWriter(Path(args.out), append=False), 0
    try:
        for result in model.predict_iter(paths, workers=args.workers):
            writer.write(result)
            n += 1
    finally:
        writer.close()
    return n


def costs(model: str, paths: list[str]) -> dict[str, float]:
    from benchmarks.workers import handwritten

    sample = paths[: min(len(paths), 300)]
    handwritten.decode_seconds(sample[:10])  # warm: Pillow's plugins, numpy
    decode = handwritten.decode_seconds(sample)
    infer_cpu, infer_wall = handwritten.infer_seconds(model, handwritten.prepare(sample[0]), len(sample))
    return {"decode": decode, "infer_cpu_1thread": infer_cpu, "infer_wall_default": infer_wall}


if __name__ == "__main__":
    main()

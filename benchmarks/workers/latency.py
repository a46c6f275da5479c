"""One side of the predict-latency benchmark, in its own fresh process; prints one JSON line.

    python -m benchmarks.workers.latency zoo MODEL_ID MODEL.onnx LABELS RUNS THREADS IMAGE...
    python -m benchmarks.workers.latency raw MODEL_ID MODEL.onnx LABELS RUNS THREADS IMAGE...

Loads its session, predicts IMAGE... once (warm-up, and the top-1 classes it prints for the
parent to compare), then times RUNS calls of predict on them. zoo: `zoo.load(MODEL_ID,
threads=THREADS).predict(images)`; raw: the hand-written pipeline on onnxruntime with the
same threads (benchmarks/workers/handwritten.py).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def main() -> None:
    side, model_id, model, labels, runs, threads, *images = sys.argv[1:]
    predict, top1 = setup(side, model_id, model, Path(labels).read_text().splitlines(), int(threads))
    first = predict(images)
    times = []
    for _ in range(int(runs)):
        start = time.perf_counter()
        predict(images)
        times.append(time.perf_counter() - start)
    print(json.dumps({"times": times, "top1": top1(first)}))


def setup(side: str, model_id: str, model: str, labels: list[str],
          threads: int) -> tuple[Callable[[list[str]], Any], Callable[[Any], list[int]]]:
    if side == "zoo":
        import zoo

        loaded = zoo.load(model_id, threads=threads)
        return loaded.predict, lambda out: [p.predictions[0].index for p in out]
    from benchmarks.workers import handwritten

    sess, size = handwritten.session(model, threads)
    return (lambda paths: handwritten.predict(sess, size, paths, labels)), lambda out: [r[0][0] for r in out]


if __name__ == "__main__":
    main()

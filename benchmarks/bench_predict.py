"""Predict overhead: Model.predict(paths) vs the same pipeline written by hand on onnxruntime, each in its own process.

Model: shufflenet-v2-12-int8. The hand-written path (benchmarks/workers/handwritten.py)
does what its manifest recipe says (RGB, shorter side 256 bilinear, center crop 224, /255,
ImageNet mean/std, CHW, stack, run, softmax, top-5 by argsort) with its own session built
with the same thread count. Photos: ../shared/data/images, repeated to 16. Each side runs in
a fresh process (benchmarks/workers/latency.py): two sessions in one process share the cores
and their thread pools, which inflates both sides' times and pulls the ratio towards 1.
Processes take turns; the ratio is the median over process pairs of the pair's median ratio.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks._common import (
    IMAGES,
    INFO,
    REPO,
    Config,
    Row,
    compare,
    environ,
    guarded,
    in_turn,
    interleaved,
    median,
    ms,
    need,
    paired_ratio,
    ratio_at_most,
    scratch,
    seeded_home,
)

NAME = "predict"
MODEL_ID = "shufflenet-v2-12-int8"
WORKER = "benchmarks.workers.latency"


def run(cfg: Config) -> list[Row]:
    threads = os.cpu_count() or 1
    photos = sorted(p for p in need(IMAGES).iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    batch16 = [str(photos[i % len(photos)]) for i in range(16)]
    with scratch("predict") as work, environ(ZOO_HOME=str(work / "zoo")):
        import zoo

        _, path = seeded_home(work / "zoo", MODEL_ID)
        labels = work / "labels.txt"
        labels.write_text("\n".join(zoo.load(MODEL_ID).labels or ()) + "\n")  # also writes zoo's optimised graph
        rows = []
        for items, runs in ((batch16[:1], cfg.pick(40, 3)), (batch16, cfg.pick(8, 2))):
            rows += guarded(f"predict {MODEL_ID}, batch {len(items)}", lambda items=items, runs=runs: [
                _compare(path, labels, items, runs, threads, cfg.pick(5, 1))])
        rows += guarded(f"int8 kernels, {MODEL_ID}", lambda: [_int8_kernels(path, photos, cfg.pick(10, 1), threads)])
    return rows


def _int8_kernels(path: Path, photos: list[Path], runs: int, threads: int) -> Row:
    """What zoo's exact int8 products (session.x64quantprecision) cost against onnxruntime's default kernels."""
    import onnxruntime as ort

    import zoo

    feeds = [zoo.load(MODEL_ID).preprocess(str(p)) for p in photos]

    def session(exact: bool) -> Any:
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        if exact:
            so.add_session_config_entry("session.x64quantprecision", "1")
        return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])

    sessions = {"exact": session(True), "default": session(False)}
    tops = {k: [int(s.run(None, f)[0].argmax()) for f in feeds] for k, s in sessions.items()}
    moved = sum(a != b for a, b in zip(tops["exact"], tops["default"]))
    fns = {k: (lambda s=s: [s.run(None, f) for f in feeds]) for k, s in sessions.items()}
    interleaved(1, fns)
    times = interleaved(runs, fns)
    per = {k: [t / len(feeds) for t in v] for k, v in times.items()}
    return compare(f"int8 kernels, {MODEL_ID}: exact products (zoo's sessions) vs onnxruntime's default",
                   median(per["exact"]), median(per["default"]), ms, INFO,
                   f"raw sessions, {threads} intra-op threads, one image per run, {len(feeds)} photos x {runs} "
                   f"rounds taking turns; default kernels' top-1 differs from exact on {moved} of {len(feeds)} "
                   "photos; the option acts only on x86 without VNNI (see the SIMD line), elsewhere ratio ~1",
                   ratio=paired_ratio(times["exact"], times["default"]))


def _side(side: str, path: Path, labels: Path, items: list[str], runs: int, threads: int) -> dict[str, list[float]]:
    cmd = [sys.executable, "-m", WORKER, side, MODEL_ID, str(path), str(labels), str(runs), str(threads), *items]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"{side} worker exited {done.returncode}: {tail}")
    result: dict[str, list[float]] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _compare(path: Path, labels: Path, items: list[str], runs: int, threads: int, pairs: int) -> Row:
    got: dict[str, list[dict[str, list[float]]]] = {"zoo": [], "raw": []}
    for n in range(pairs):
        for side in in_turn(list(got), n):
            got[side].append(_side(side, path, labels, items, runs, threads))
    if got["zoo"][0]["top1"] != got["raw"][0]["top1"]:
        raise RuntimeError(f"top-1 differs: zoo {got['zoo'][0]['top1']}, hand-written {got['raw'][0]['top1']}")
    per = {side: [median(r["times"]) for r in results] for side, results in got.items()}
    ratio = median([z / r for z, r in zip(per["zoo"], per["raw"])])
    what = Path(items[0]).name if len(items) == 1 else f"{len(set(items))} photos, some twice"
    notes = (f"{pairs} fresh processes per side, taking turns, {runs} timed calls each after a warm-up; medians; "
             f"{what}; same recipe, {threads} intra-op threads each; zoo also applies EXIF orientation "
             f"(ImageOps.exif_transpose), which the hand-written path skips; per-process medians ms: "
             f"zoo {_listed(per['zoo'])}; raw {_listed(per['raw'])}")
    if len(items) > 1:
        notes += f"; the model's batch axis is fixed at 1, so both paths make {len(items)} runs of one image"
    return compare(f"predict {MODEL_ID}, batch {len(items)}", median(per["zoo"]), median(per["raw"]), ms,
                   ratio_at_most(1.05), notes, ratio=ratio)


def _listed(seconds: list[float]) -> str:
    return ", ".join(f"{1000 * t:.1f}" for t in seconds)

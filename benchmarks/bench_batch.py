"""Folder prediction: `zoo predict MODEL DIR -o out.jsonl` (no flags) vs hand-written loops, each a fresh process.

Models: shufflenet-v2-12-int8 (batch axis fixed at 1) and mobilenetv2-12-int8 (dynamic
batch). Inputs: JPEGs generated once per run from ../shared/data/images by seeded random
crops and resizes (150-640 px a side, quality 85). Every side runs in its own process
(benchmarks/workers/folder.py), taking turns, and times its work from the zoo command's
start (or the hand-written session's creation) to the last row written: the thread-pool
loop (benchmarks/workers/handwritten.py: decoding in a ThreadPoolExecutor with one thread
per core, onnxruntime's default session) is the target, the naive loop shows what streaming
buys. The ceiling is what the cores can do: cores / (decode + inference CPU seconds per
image, each measured alone in one thread). Peak RSS: the same command in a fresh process
on 200 and 2,000 images. Smoke: 60 images, one round.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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
    median,
    need,
    paired_ratio,
    ratio_at_least,
    ratio_at_most,
    scratch,
    seeded_home,
)

NAME = "batch"
MODEL_IDS = ("shufflenet-v2-12-int8", "mobilenetv2-12-int8")
SIDES = (150, 640)
QUALITY = 85
SEED = 20240611
WORKER = "benchmarks.workers.folder"

# Peak RSS of a fresh process, written to a file at exit. Not ru_maxrss: Linux keeps the pre-exec
# high-water mark across execve, so a child of this (large) process would report this process's RSS.
PEAK = """
import atexit

def _peak():
    try:
        with open("/proc/self/status") as f:
            kib = next(line.split()[1] for line in f if line.startswith("VmHWM:"))
    except OSError:  # no procfs: ru_maxrss (KiB on Linux)
        import resource
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with open({peak!r}, "w") as f:
        f.write(str(kib))

atexit.register(_peak)
"""
# `zoo predict MODEL DIR -o out.jsonl -q` as its console script runs it.
ZOO_CHILD = """
import sys
sys.argv = {argv!r}
from zoo.cli import cli
cli()
"""
# The naive loop: what a user's script holds, nothing of zoo.
RAW_CHILD = """
from pathlib import Path
from benchmarks.workers.handwritten import naive_loop
paths = sorted(str(p) for p in Path({folder!r}).iterdir() if p.suffix == ".jpg")
naive_loop({model!r}, paths, Path({labels!r}).read_text().splitlines(), {out!r})
"""


def run(cfg: Config) -> list[Row]:
    photos = sorted(p for p in need(IMAGES).iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    count, small = cfg.pick(2000, 60), cfg.pick(200, 20)
    with scratch("batch") as work, environ(ZOO_HOME=str(work / "zoo")):
        import zoo

        paths = {model_id: seeded_home(work / "zoo", model_id)[1] for model_id in MODEL_IDS}
        started = time.perf_counter()
        folder = generate(photos, work / "images", count)
        made = time.perf_counter() - started
        labels = work / "labels.txt"
        labels.write_text("\n".join(zoo.load(MODEL_IDS[0]).labels or ()) + "\n")
        what = (f"{count} JPEGs (seeded crops of {len(photos)} photos, {SIDES[0]}-{SIDES[1]} px a side, q{QUALITY}; "
                f"made in {made:.0f} s), in the page cache")
        rows: list[Row] = []
        for model_id in MODEL_IDS:
            rows += guarded(f"batch {model_id}, {count} images", lambda model_id=model_id: _folder(
                model_id, paths[model_id], folder, labels, work, cfg.pick(3, 1), what))
        rows += guarded(f"batch peak RSS, {small} -> {count} images", lambda: _memory(
            folder, small, count, work, paths[MODEL_IDS[0]], labels))
    return rows


def generate(photos: list[Path], folder: Path, count: int) -> Path:
    """`count` JPEGs cut from `photos`: random crop, random size, same files for the same seed."""
    from PIL import Image

    rng = random.Random(SEED)
    sources = []
    for photo in photos:
        with Image.open(photo) as img:
            sources.append(img.convert("RGB"))
    folder.mkdir(parents=True)
    for n in range(count):
        src = rng.choice(sources)
        w, h = rng.randint(*SIDES), rng.randint(*SIDES)
        # The largest crop of the target's aspect that fits, shrunk at random and placed at random.
        cw = min(src.width, src.height * w / h) * rng.uniform(0.5, 1.0)
        ch = cw * h / w
        left, top = rng.uniform(0, src.width - cw), rng.uniform(0, src.height - ch)
        out = src.resize((w, h), Image.Resampling.BILINEAR, box=(left, top, left + cw, top + ch))
        out.save(folder / f"{n:05d}.jpg", quality=QUALITY)
    return folder


def worker(mode: str, model: str, folder: Path, out: Path, *extra: str) -> dict[str, float]:
    """One side in a fresh process (benchmarks/workers/folder.py); its JSON line."""
    cmd = [sys.executable, "-m", WORKER, mode, model, str(folder), str(out), *extra]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"{mode} worker exited {done.returncode}: {tail}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _folder(model_id: str, model: Path, folder: Path, labels: Path, work: Path, runs: int, what: str) -> list[Row]:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    costs = worker("costs", str(model), folder, work / "costs.json")
    ceiling = cores / (costs["decode"] + costs["infer_cpu_1thread"])
    outs = {side: work / f"{model_id}.{side}.jsonl" for side in ("zoo", "pool", "naive")}
    sides = {"zoo": ("zoo", model_id), "pool": ("pool", str(model), "--labels", str(labels)),
             "naive": ("naive", str(model), "--labels", str(labels))}
    got: dict[str, list[dict[str, float]]] = {side: [] for side in sides}
    for n in range(runs):
        for side in in_turn(list(sides), n):
            mode, name, *extra = sides[side]
            got[side].append(worker(mode, name, folder, outs[side], *extra))
    count = int(got["zoo"][0]["images"])
    agree = _agreement(outs["zoo"], outs["pool"], count)
    rate = {side: [r["rate"] for r in results] for side, results in got.items()}
    cpu = {side: median([1000 * r["cpu"] / r["images"] for r in results]) for side, results in got.items()}
    runs_text = "; ".join(f"{side} " + ", ".join(f"{r:.0f}" for r in rs) for side, rs in rate.items())
    fmt = lambda r: f"{r:.0f} img/s"  # noqa: E731
    paired = 1 / paired_ratio([1 / r for r in rate["zoo"]], [1 / r for r in rate["pool"]])
    batch = "fixed batch 1" if "shufflenet" in model_id else "dynamic batch"
    notes = (f"median of {runs} fresh processes per side, taking turns; {what}; {batch}; zoo: `zoo predict "
             f"{model_id} DIR -o out.jsonl -q`, no flags (zoo.tuning: 1 intra-op thread, streams of prepare+run); "
             f"baseline: ThreadPoolExecutor({cores}) decoding + onnxruntime's default session "
             f"(benchmarks/workers/handwritten.py); ceiling {ceiling:.0f} img/s = {cores} cores / (decode "
             f"{1000 * costs['decode']:.2f} ms + inference {1000 * costs['infer_cpu_1thread']:.2f} ms CPU per "
             f"image, 1 thread each); zoo at {median(rate['zoo']) / ceiling:.2f} of it; naive loop "
             f"{median(rate['naive']):.0f} img/s; CPU ms per image: zoo {cpu['zoo']:.1f}, pool {cpu['pool']:.1f}, "
             f"naive {cpu['naive']:.1f}; top-1 agrees with the pool loop on {agree}; runs img/s: {runs_text}")
    return [
        compare(f"batch {model_id}, {count} images: zoo predict DIR vs thread-pool loop", median(rate["zoo"]),
                median(rate["pool"]), fmt, ratio_at_least(0.95), notes, ratio=paired),
        compare(f"batch {model_id}, {count} images: zoo predict DIR vs the CPU ceiling", median(rate["zoo"]),
                ceiling, fmt, INFO, f"ceiling: {cores} cores / (decode + inference CPU seconds per image, each "
                f"measured alone in one thread: {1000 * costs['decode']:.2f} + {1000 * costs['infer_cpu_1thread']:.2f}"
                f" ms); CPU ms per image in the run: zoo {cpu['zoo']:.1f}, thread-pool loop {cpu['pool']:.1f} (its "
                "intra-op threads spin); other processes on the machine lower every rate, not the ceiling"),
        compare(f"batch {model_id}, {count} images: zoo predict DIR vs naive loop", median(rate["zoo"]),
                median(rate["naive"]), fmt, INFO, "the naive loop decodes and runs one image after the other",
                ratio=1 / paired_ratio([1 / r for r in rate["zoo"]], [1 / r for r in rate["naive"]])),
    ]


def _agreement(zoo_out: Path, raw_out: Path, count: int) -> str:
    """How often both files give the same top-1 class; too few agreeing means the comparison is broken.

    The int8 model's logits are dequantized integers, so exact ties for first place happen (about
    3 in 100 crops here); zoo and np.argsort break them differently. A tie counts as agreeing.
    """
    def top5(path: Path) -> dict[str, list[tuple[int, float]]]:
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        return {r["input"]: [(p["index"], p["score"]) for p in r["predictions"]] for r in rows}

    z, r = top5(zoo_out), top5(raw_out)
    if len(z) != count or len(r) != count:
        raise RuntimeError(f"expected {count} rows, zoo wrote {len(z)} and the hand-written loop {len(r)}")
    same = sum(z[k][0][0] == r[k][0][0] for k in z)
    tied = sum(z[k][0][0] != r[k][0][0] and z[k][0] in r[k] and abs(z[k][0][1] - r[k][0][1]) < 1e-6 for k in z)
    if same + tied < 0.99 * count:
        raise RuntimeError(f"top-1 differs on {count - same - tied} of {count} images: not the same pipeline")
    return f"{same}/{count}" + (f", the other {tied} exact ties for first place broken differently" if tied else "")


def _memory(folder: Path, small: int, large: int, work: Path, model: Path, labels: Path) -> list[Row]:
    subset = work / f"images-{small}"
    subset.mkdir()
    for p in sorted(folder.iterdir())[:small]:
        os.link(p, subset / p.name)

    def code(key: str, images: Path) -> str:
        if key == "zoo":
            argv = ["zoo", "predict", MODEL_IDS[0], str(images), "-o", str(work / "rss.jsonl"), "-q"]
            return ZOO_CHILD.format(argv=argv)
        return RAW_CHILD.format(model=str(model), folder=str(images), out=str(work / "rss-raw.jsonl"),
                                labels=str(labels))

    peak = {(key, n): _peak_rss(code(key, images), work / "peak")
            for n, images in ((small, subset), (large, folder)) for key in ("zoo", "raw")}
    mib = lambda kib: f"{kib / 1024:.1f} MiB"  # noqa: E731
    grow = {key: peak[(key, large)][0] / peak[(key, small)][0] for key in ("zoo", "raw")}
    secs = lambda key: ", ".join(f"{n}: {peak[(key, n)][1]:.1f} s" for n in (small, large))  # noqa: E731
    how = "peak RSS (VmHWM at exit) of a fresh process each"
    return [
        compare(f"batch peak RSS: zoo predict DIR -o, {small} -> {large} images", peak[("zoo", large)][0],
                peak[("zoo", small)][0], mib, ratio_at_most(1.15),
                f"baseline column: the same command on the first {small} images; {how} running "
                f"`zoo predict {MODEL_IDS[0]} DIR -o out.jsonl -q`, imports and session included; "
                f"wall {secs('zoo')}"),
        compare(f"batch peak RSS at {large} images: zoo predict DIR -o vs naive loop", peak[("zoo", large)][0],
                peak[("raw", large)][0], mib, INFO,
                f"naive loop, {how}: {mib(peak[('raw', small)][0])} on {small} images, "
                f"{mib(peak[('raw', large)][0])} on {large} (x{grow['raw']:.2f}; zoo x{grow['zoo']:.2f}); "
                f"it imports onnxruntime, numpy and PIL only; wall {secs('raw')}"),
    ]


def _peak_rss(code: str, report: Path) -> tuple[float, float]:
    """(peak RSS in KiB, wall seconds) of a fresh Python process running `code` from the repo root."""
    report.unlink(missing_ok=True)
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", PEAK.format(peak=str(report)) + code], cwd=REPO,
                              stdout=subprocess.DEVNULL, stderr=err, check=False)
        wall = time.perf_counter() - t0
        if done.returncode != 0 or not report.exists():
            err.seek(0)
            tail = err.read().decode(errors="replace").strip().splitlines()[-1:]
            raise RuntimeError(f"child exited {done.returncode}: {' '.join(tail)}")
    return float(report.read_text()), wall


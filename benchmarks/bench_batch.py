"""Folder prediction: Model.predict_iter + ResultWriter vs a hand-written onnxruntime loop, and peak RSS.

Model: shufflenet-v2-12-int8, 2 intra-op threads in both paths. Inputs: JPEGs
generated once per run from ../shared/data/images by seeded random crops and
resizes (150-640 px a side, quality 85). zoo streams them as `zoo predict DIR -o
out.jsonl` does; the baseline is the loop a user writes: one image at a time,
the same recipe as bench_predict's HandWritten, one JSON row per image. Peak RSS
is each path's high-water RSS in a fresh process, on 10x more images (zoo: the
`zoo predict MODEL DIR -o` command line). Smoke: 100 images timed, 20 -> 200 for RSS.
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
    median,
    need,
    paired_ratio,
    ratio_at_least,
    ratio_at_most,
    scratch,
    seeded_home,
)
from benchmarks.bench_predict import HandWritten

NAME = "batch"
MODEL_ID = "shufflenet-v2-12-int8"
THREADS = 2
SIDES = (150, 640)
QUALITY = 85
SEED = 20240611

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
# `zoo predict MODEL DIR -o out.jsonl` as its console script runs it.
ZOO_CHILD = """
import sys
sys.argv = {argv!r}
from zoo.cli import cli
cli()
"""
# The raw loop: what a user's script holds, nothing of zoo.
RAW_CHILD = """
from pathlib import Path
from benchmarks.bench_batch import raw_folder
raw_folder({model!r}, {folder!r}, {out!r}, Path({labels!r}).read_text().splitlines())
"""


def run(cfg: Config) -> list[Row]:
    photos = sorted(p for p in need(IMAGES).iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    count, small, large = cfg.pick(2000, 100), cfg.pick(200, 20), cfg.pick(2000, 200)
    with scratch("batch") as work, environ(ZOO_HOME=str(work / "zoo")):
        import zoo

        _, path = seeded_home(work / "zoo", MODEL_ID)
        started = time.perf_counter()
        # Smoke makes 200 (not 100): the larger peak-RSS run needs them; generating them takes ~1 s.
        folder = generate(photos, work / "images", max(count, large))
        made = time.perf_counter() - started
        model = zoo.load(MODEL_ID, threads=THREADS, spinning=False)  # as `zoo predict DIR -o` loads it
        raw = HandWritten(path, THREADS, model.labels)
        paths = sorted(str(p) for p in folder.iterdir())[:count]
        what = (f"{count} JPEGs (seeded crops of {len(photos)} photos, {SIDES[0]}-{SIDES[1]} px a side, q{QUALITY}; "
                f"made in {made:.0f} s)")
        rows = guarded(f"batch {MODEL_ID}, {count} images", lambda: [
            _throughput(model, raw, paths, work, cfg.pick(3, 2), what)])
        rows += guarded(f"batch peak RSS, {small} -> {large} images", lambda: _memory(
            folder, small, large, work, path, model.labels))
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


def zoo_rows(model: Any, paths: list[str], out: Path) -> int:
    """What `zoo predict DIR -o out.jsonl` does after loading: stream, write and flush a row per image."""
    from zoo import batch

    writer, n = batch.ResultWriter(out, append=False), 0
    try:
        for result in model.predict_iter(paths, batch_size=16):
            writer.write(result)
            n += 1
    finally:
        writer.close()
    return n


def raw_rows(raw: HandWritten, paths: list[str], out: Path) -> int:
    """The simple loop: one image at a time, decode then run, one JSON row each."""
    with open(out, "w", encoding="utf-8") as f:
        for path in paths:
            top5 = raw.predict([path])[0]
            row = {"input": path, "model": MODEL_ID, "provider": "CPUExecutionProvider", "task": "classification",
                   "predictions": [{"index": i, "label": label, "score": score} for i, label, score in top5]}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return len(paths)


def raw_folder(model: str, folder: str, out: str, labels: list[str]) -> None:
    """The raw loop over a folder, as RAW_CHILD runs it."""
    paths = sorted(str(p) for p in Path(folder).iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    raw_rows(HandWritten(Path(model), THREADS, labels), paths, Path(out))


def _throughput(model: Any, raw: HandWritten, paths: list[str], work: Path, runs: int, what: str) -> Row:
    outs = {"zoo": work / "zoo.jsonl", "raw": work / "raw.jsonl"}
    fns = {"zoo": lambda: zoo_rows(model, paths, outs["zoo"]), "raw": lambda: raw_rows(raw, paths, outs["raw"])}
    zoo_rows(model, paths[:32], outs["zoo"])  # warm-up: sessions, thread pools, allocator
    raw_rows(raw, paths[:32], outs["raw"])
    rates: dict[str, list[float]] = {"zoo": [], "raw": []}
    for n in range(runs):
        for key in in_turn(list(fns), n):
            t0 = time.perf_counter()
            done = fns[key]()
            rates[key].append(done / (time.perf_counter() - t0))
    agree = _agreement(outs["zoo"], outs["raw"], len(paths))
    runs_text = "; ".join(f"{k} " + ", ".join(f"{r:.1f}" for r in v) for k, v in rates.items())
    notes = (f"median of {runs}, taking turns; {what}, in the page cache; zoo: predict_iter(batch_size=16) "
             f"(decode pool of {min(4, os.cpu_count() or 1)} threads) + ResultWriter (flush per row); raw: a simple "
             f"sequential loop, one image at a time (PIL open, RGB, shorter side 256 bilinear, crop 224, /255, "
             f"mean/std, CHW, run, softmax, top-5), json.dumps rows; {THREADS} intra-op threads each; "
             f"{MODEL_ID} has a fixed batch of 1, so every session.run takes one image whatever batch_size says, "
             f"and zoo's only possible win is decoding in threads overlapping inference; top-1 agrees on {agree}; "
             f"runs img/s: {runs_text}")
    # The paired ratio of rates is the inverse of the paired ratio of times, as in the rest of the suite.
    return compare(f"batch {MODEL_ID}, {len(paths)} images: predict_iter vs raw loop", median(rates["zoo"]),
                   median(rates["raw"]), lambda r: f"{r:.1f} img/s", ratio_at_least(0.9), notes,
                   ratio=1 / paired_ratio([1 / r for r in rates["zoo"]], [1 / r for r in rates["raw"]]))


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
        raise RuntimeError(f"expected {count} rows, zoo wrote {len(z)} and the raw loop {len(r)}")
    same = sum(z[k][0][0] == r[k][0][0] for k in z)
    tied = sum(z[k][0][0] != r[k][0][0] and z[k][0] in r[k] and z[k][0][1] == r[k][0][1] for k in z)
    if same + tied < 0.99 * count:
        raise RuntimeError(f"top-1 differs on {count - same - tied} of {count} images: not the same pipeline")
    return f"{same}/{count}" + (f", the other {tied} exact ties for first place broken differently" if tied else "")


def _memory(folder: Path, small: int, large: int, work: Path, model: Path, labels: Any) -> list[Row]:
    subset = work / f"images-{small}"
    subset.mkdir()
    for p in sorted(folder.iterdir())[:small]:
        os.link(p, subset / p.name)
    (work / "labels.txt").write_text("\n".join(labels) + "\n")

    def code(key: str, images: Path) -> str:
        if key == "zoo":
            argv = ["zoo", "predict", MODEL_ID, str(images), "-o", str(work / "rss.jsonl"), "--threads",
                    str(THREADS), "-q"]
            return ZOO_CHILD.format(argv=argv)
        return RAW_CHILD.format(model=str(model), folder=str(images), out=str(work / "rss-raw.jsonl"),
                                labels=str(work / "labels.txt"))

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
                f"`zoo predict {MODEL_ID} DIR -o out.jsonl --threads {THREADS} -q`, imports and session "
                f"included; wall {secs('zoo')}"),
        compare(f"batch peak RSS at {large} images: zoo predict DIR -o vs raw loop", peak[("zoo", large)][0],
                peak[("raw", large)][0], mib, INFO,
                f"raw loop, {how}: {mib(peak[('raw', small)][0])} on {small} images, "
                f"{mib(peak[('raw', large)][0])} on {large} (x{grow['raw']:.2f}; zoo x{grow['zoo']:.2f}); "
                f"raw imports onnxruntime, numpy and PIL only; wall {secs('raw')}"),
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

"""Folder prediction written by hand on onnxruntime: the loops zoo is measured against.

The same recipe as the zoo manifests of the benchmark's models (RGB, shorter side 256
bilinear, centre crop 224, /255, ImageNet mean/std, CHW), softmax, top-5, one JSON
row per image. `pool_loop` is what a competent user writes (~30 lines): decoding in a
ThreadPoolExecutor, in order, while the session runs; `naive_loop` decodes and runs
one image after the other.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnxruntime as ort
from PIL import Image

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def prepare(path: str) -> np.ndarray:
    with Image.open(path) as img:
        img = img.convert("RGB")
    w, h = img.size
    s = 256 / min(w, h)
    rw, rh = (256, int(h * s)) if w <= h else (int(w * s), 256)
    img = img.resize((rw, rh), Image.Resampling.BILINEAR)
    left, top = (rw - 224) // 2, (rh - 224) // 2
    img = img.crop((left, top, left + 224, top + 224))
    x = (np.asarray(img, dtype=np.float32) / 255.0 - MEAN) / STD
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def session(model: str, threads: int | None = None) -> tuple[ort.InferenceSession, int]:
    """The session (onnxruntime's defaults unless `threads`) and how many images one run may take."""
    options = ort.SessionOptions()
    options.add_session_config_entry("session.x64quantprecision", "1")  # exact int8 on AVX2, as zoo
    if threads:
        options.intra_op_num_threads = threads
    sess = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    dim = sess.get_inputs()[0].shape[0]
    return sess, dim if isinstance(dim, int) else 16


def rows(sess: ort.InferenceSession, paths: list[str], batch: np.ndarray, labels: list[str]) -> Iterator[str]:
    logits = sess.run(None, {sess.get_inputs()[0].name: batch})[0].reshape(len(batch), -1).astype(np.float64)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    for path, p in zip(paths, e / e.sum(axis=1, keepdims=True)):
        top = [{"index": int(i), "label": labels[i], "score": float(p[i])} for i in np.argsort(-p)[:5]]
        yield json.dumps({"input": path, "predictions": top})


def chunks(paths: list[str], size: int) -> Iterable[list[str]]:
    return (paths[at : at + size] for at in range(0, len(paths), size))


def pool_loop(model: str, paths: list[str], labels: list[str], out: str) -> int:
    """Decode in a thread pool (one thread per core), run in order: the competent hand-written loop."""
    sess, size = session(model)
    with ThreadPoolExecutor(os.cpu_count()) as pool, open(out, "w") as f:
        tensors = pool.map(prepare, paths)  # submits all at once; results come back in order
        for group in chunks(paths, size):
            batch = np.stack([next(tensors) for _ in group])
            for line in rows(sess, group, batch, labels):
                f.write(line + "\n")
    return len(paths)


def naive_loop(model: str, paths: list[str], labels: list[str], out: str) -> int:
    """One image at a time: decode, run, write."""
    sess, _ = session(model)
    with open(out, "w") as f:
        for path in paths:
            for line in rows(sess, [path], prepare(path)[None], labels):
                f.write(line + "\n")
    return len(paths)


def predict(sess: ort.InferenceSession, size: int, paths: list[str],
            labels: list[str]) -> list[list[tuple[int, str, float]]]:
    """Top-5 (index, label, probability) per image, `size` images per run."""
    out = []
    for group in chunks(paths, size):
        batch = np.stack([prepare(p) for p in group])
        for line in rows(sess, group, batch, labels):
            out.append([(p["index"], p["label"], p["score"]) for p in json.loads(line)["predictions"]])
    return out


def decode_seconds(paths: list[str]) -> float:
    """CPU seconds per image of `prepare` in one thread (thread CPU time: other processes do not count)."""
    import time

    start = time.thread_time()
    for path in paths:
        prepare(path)
    return (time.thread_time() - start) / len(paths)


def infer_seconds(model: str, tensor: np.ndarray, runs: int) -> tuple[float, float]:
    """(CPU seconds per image with 1 intra-op thread, wall seconds per image with the default threads)."""
    import time

    one, _ = session(model, threads=1)
    feeds = {one.get_inputs()[0].name: tensor[None]}
    one.run(None, feeds)
    start = time.process_time()
    for _ in range(runs):
        one.run(None, feeds)
    cpu = (time.process_time() - start) / runs
    default, _ = session(model)
    default.run(None, feeds)
    start = time.perf_counter()
    for _ in range(runs):
        default.run(None, feeds)
    return cpu, (time.perf_counter() - start) / runs

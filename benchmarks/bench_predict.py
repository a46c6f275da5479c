"""Predict overhead: Model.predict(paths) vs the same pipeline written by hand on onnxruntime.

Model: shufflenet-v2-12-int8. The hand-written path does what its manifest
recipe says (RGB, shorter side 256 bilinear, center crop 224, /255, ImageNet
mean/std, CHW, stack, run, softmax, top-5 by argsort) with its own session built
with the same thread count. Photos: ../shared/data/images, repeated to 16.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from benchmarks._common import (
    IMAGES,
    Config,
    Row,
    compare,
    environ,
    guarded,
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


def run(cfg: Config) -> list[Row]:
    threads = os.cpu_count() or 1
    photos = sorted(p for p in need(IMAGES).iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    batch16 = [str(photos[i % len(photos)]) for i in range(16)]
    with scratch("predict") as work, environ(ZOO_HOME=str(work / "zoo")):
        import zoo

        _, path = seeded_home(work / "zoo", MODEL_ID)
        model = zoo.load(MODEL_ID, threads=threads)
        raw = HandWritten(path, threads, model.labels)
        rows = []
        for items, runs in ((batch16[:1], cfg.pick(100, 3)), (batch16, cfg.pick(20, 2))):
            rows += guarded(f"predict {MODEL_ID}, batch {len(items)}", lambda: [_compare(model, raw, items, runs)])
    return rows


def _compare(model: Any, raw: HandWritten, items: list[str], runs: int) -> Row:
    _check_same(model.predict(items), raw.predict(items))  # also the warm-up
    times = interleaved(runs, {"zoo": lambda: model.predict(items), "raw": lambda: raw.predict(items)})
    what = Path(items[0]).name if len(items) == 1 else f"{len(set(items))} photos, some twice"
    notes = (f"median of {runs}; {what}; same recipe, {raw.threads} intra-op threads each; zoo also applies "
             "EXIF orientation (ImageOps.exif_transpose), which the hand-written path skips")
    if raw.limit == 1 and len(items) > 1:
        notes += f"; the model's batch axis is fixed at 1, so both paths make {len(items)} runs of one image"
    return compare(f"predict {MODEL_ID}, batch {len(items)}", median(times["zoo"]), median(times["raw"]), ms,
                   ratio_at_most(1.05), notes, ratio=paired_ratio(times["zoo"], times["raw"]))


def _check_same(zoo: list[Any], raw: list[list[tuple[int, str, float]]]) -> None:
    """Both paths must give the same top-1 class for every image, or the comparison means nothing."""
    for z, r in zip(zoo, raw):
        if z.predictions[0].index != r[0][0]:
            raise RuntimeError(f"{z.input}: zoo says {z.predictions[0].index}, hand-written says {r[0][0]}")


class HandWritten:
    """The pipeline a user would write without zoo."""

    def __init__(self, path: Path, threads: int, labels: Any) -> None:
        import numpy as np
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.threads, self.labels = threads, labels
        meta = self.session.get_inputs()[0]
        self.input, self.limit = meta.name, meta.shape[0] if isinstance(meta.shape[0], int) else 64
        self.mean = np.array([0.485, 0.456, 0.406], dtype=np.float32)
        self.std = np.array([0.229, 0.224, 0.225], dtype=np.float32)

    def prepare(self, path: str) -> Any:
        import numpy as np
        from PIL import Image

        with Image.open(path) as img:
            img = img.convert("RGB")
        w, h = img.size
        s = 256 / min(w, h)
        rw, rh = (256, int(h * s)) if w <= h else (int(w * s), 256)
        img = img.resize((rw, rh), Image.Resampling.BILINEAR)
        left, top = (rw - 224) // 2, (rh - 224) // 2
        img = img.crop((left, top, left + 224, top + 224))
        x = (np.asarray(img, dtype=np.float32) / 255.0 - self.mean) / self.std
        return x.transpose(2, 0, 1)

    def predict(self, paths: list[str]) -> list[list[tuple[int, str, float]]]:
        import numpy as np

        tensors, out = [self.prepare(p) for p in paths], []
        for at in range(0, len(tensors), self.limit):
            batch = np.stack(tensors[at : at + self.limit])
            logits = self.session.run(None, {self.input: batch})[0].reshape(len(batch), -1).astype(np.float64)
            e = np.exp(logits - logits.max(axis=1, keepdims=True))
            probs = e / e.sum(axis=1, keepdims=True)
            for row in probs:
                out.append([(int(i), self.labels[i], float(row[i])) for i in np.argsort(-row)[:5]])
        return out

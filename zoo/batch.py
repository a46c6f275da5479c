"""Streaming prediction over many inputs: decode in threads, batch, run, write as it goes.

Memory stays bounded whatever the number of inputs: only a window of decoded
images (a few batches) exists at a time. Results come out in input order; an
unreadable input becomes a Failure row instead of stopping the run.
"""

from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.errors import InputError, ZooError

if TYPE_CHECKING:
    from zoo.api import Model, Prediction

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


@dataclass(frozen=True, slots=True)
class Failure:
    """An input that could not be predicted, and why."""

    input: str
    model: str
    error: str

    def to_dict(self) -> dict[str, Any]:
        return {"input": self.input, "model": self.model, "error": self.error}


def list_inputs(sources: Iterable[str | Path], *, recursive: bool = False, pattern: str | None = None) -> list[str]:
    """Files named directly, plus the images in named folders (sorted, so runs are repeatable)."""
    out: list[str] = []
    for source in sources:
        path = Path(source)
        if not path.is_dir():
            out.append(str(source))
            continue
        found = path.rglob(pattern or "*") if recursive else path.glob(pattern or "*")
        files = [p for p in found if p.is_file() and (pattern or p.suffix.lower() in IMAGE_SUFFIXES)]
        out.extend(str(p) for p in sorted(files))
    return out


def _prepare(model: Model, item: Any) -> Any:
    from zoo.pipeline import images

    return model._prepare(images.open_image(item))


def predict_iter(model: Model, items: Iterable[Any], *, batch_size: int = 16, workers: int | None = None,
                 topk: int | None = None, score_threshold: float | None = None) -> Iterator[Prediction | Failure]:
    """Yield one Prediction (or Failure) per item, in input order."""
    from zoo.pipeline.images import describe
    from zoo.predict import max_batch, run_group

    limit = max(1, min(batch_size, max_batch(model)))
    workers = workers or min(4, os.cpu_count() or 1)
    source = iter(items)
    pending: deque[tuple[Any, Future]] = deque()
    with ThreadPoolExecutor(workers, thread_name_prefix="zoo-decode") as pool:
        def refill() -> None:
            while len(pending) < 2 * limit + workers:
                item = next(source, _END)
                if item is _END:
                    return
                pending.append((item, pool.submit(_prepare, model, item)))

        refill()
        while pending:
            group: list[tuple[Any, Any]] = []
            while pending and len(group) < limit:
                item, future = pending[0]
                try:
                    prepared = future.result()
                except ZooError as exc:
                    if group:
                        break  # run what we have first, to keep input order
                    pending.popleft()
                    refill()
                    yield Failure(describe(item), model.name, exc.what)
                    continue
                if group and prepared.tensor.shape != group[0][1].tensor.shape:
                    break
                pending.popleft()
                group.append((item, prepared))
                refill()
            if group:
                yield from run_group(model, group, topk=topk, score_threshold=score_threshold)


_END = object()


class ResultWriter:
    """Append result rows to a .jsonl or .csv file, flushed as they come."""

    CSV_FIELDS = ("input", "model", "provider", "task", "top_index", "top_label", "top_score", "predictions", "error")

    def __init__(self, path: Path, *, append: bool) -> None:
        if path.suffix not in (".jsonl", ".csv"):
            raise InputError(f"unsupported output file {path}", expected=["a .jsonl or .csv file name"])
        self.path = path
        if append:
            _trim_torn_tail(path)
        fresh = not append or not path.exists() or path.stat().st_size == 0
        self.handle = open(path, "a" if append else "w", encoding="utf-8", newline="")
        self.csv = None
        if path.suffix == ".csv":
            import csv

            self.csv = csv.DictWriter(self.handle, self.CSV_FIELDS)
            if fresh:
                self.csv.writeheader()

    def write(self, result: Any) -> None:
        row = result.to_dict()
        if self.csv is None:
            self.handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        else:
            self.csv.writerow(_csv_row(row))
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


def _csv_row(row: dict[str, Any]) -> dict[str, Any]:
    preds = row.get("predictions")
    top = preds[0] if isinstance(preds, list) and preds and isinstance(preds[0], dict) else {}
    return {"input": row["input"], "model": row.get("model"), "provider": row.get("provider"),
            "task": row.get("task"), "top_index": top.get("index"), "top_label": top.get("label"),
            "top_score": top.get("score"), "predictions": None if preds is None else json.dumps(preds),
            "error": row.get("error")}


def done_inputs(path: Path) -> set[str]:
    """Inputs already present in an output file (for --resume); a torn last line is ignored."""
    if not path.exists():
        return set()
    if path.suffix == ".csv":
        import csv

        with open(path, encoding="utf-8", newline="") as handle:
            return {row["input"] for row in csv.DictReader(handle) if row.get("input")}
    done = set()
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                done.add(json.loads(line)["input"])
            except (ValueError, KeyError, TypeError):
                continue
    return done


def _trim_torn_tail(path: Path) -> None:
    """Drop a last line cut short by an interrupted run, so appended rows start on a fresh line."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as handle:
        data = handle.read()
        if data.endswith(b"\n"):
            return
        handle.truncate(data.rfind(b"\n") + 1)

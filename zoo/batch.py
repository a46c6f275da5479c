"""File I/O of many-input runs: list the inputs, write result rows as they come, resume.

Rows must round-trip any file name: names that are not valid UTF-8 (kept by Python as
surrogate escapes) and names holding newlines or quotes. JSONL rows fall back to ASCII
escapes for such names (still standard JSON); CSV files keep the name's own bytes and
quote fields, and a torn last record is trimmed at the last record boundary outside quotes.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from zoo import safejson
from zoo.errors import InputError
from zoo.prediction import Failure, Result

__all__ = ["IMAGE_SUFFIXES", "Failure", "ResultWriter", "check_output_file", "done_inputs", "dumps_row", "list_inputs"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


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


class ResultWriter:
    """Append result rows to a .jsonl or .csv file, flushed as they come."""

    CSV_FIELDS = ("input", "model", "provider", "task", "top_index", "top_label", "top_score", "predictions", "error")

    def __init__(self, path: Path, *, append: bool) -> None:
        check_output_file(path)
        self.path = path
        if append:
            _trim_torn_tail(path)
        fresh = not append or not path.exists() or path.stat().st_size == 0
        # surrogateescape: a file name that is not UTF-8 is written as its own bytes, and read back the same.
        # Kept open for the writer's lifetime (rows are flushed as they come); close() ends it.
        try:
            self.handle = open(path, "a" if append else "w", encoding="utf-8",  # noqa: SIM115
                               errors="surrogateescape", newline="")
        except OSError as exc:  # /proc, a read-only mount: what os.access cannot tell root beforehand
            raise InputError(f"cannot write the output file {path}: {exc.strerror or exc}",
                             expected=["a file in a folder you can write to"]) from None
        self.csv: csv.DictWriter[str] | None = None
        if path.suffix == ".csv":
            self.csv = csv.DictWriter(self.handle, self.CSV_FIELDS)
            if fresh:
                self.csv.writeheader()

    def write(self, result: Result) -> None:
        row = result.to_dict()
        if self.csv is None:
            self.handle.write(dumps_row(row) + "\n")
        else:
            self.csv.writerow(_csv_row(row))
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


def check_output_file(path: Path) -> None:
    """Refuse an output file zoo cannot write, before any work starts."""
    if not str(path) or path.suffix not in (".jsonl", ".csv"):
        raise InputError(f"unsupported output file {str(path)!r}", expected=["a .jsonl or .csv file name"])
    if path.is_dir():
        raise InputError(f"the output {path} is a folder", expected=["a .jsonl or .csv file name inside a folder"])
    parent = path.parent
    if not parent.is_dir():
        raise InputError(f"the folder of the output file {path} does not exist",
                         expected=[f"an existing folder (mkdir -p {parent})"])
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise InputError(f"cannot write the output file {path}: permission denied",
                         expected=["a file in a folder you can write to"])


def dumps_row(row: dict[str, Any]) -> str:
    """One JSON line; ASCII escapes when a value (a non-UTF-8 file name) cannot be written as UTF-8."""
    text = json.dumps(row, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(row, ensure_ascii=True)
    return text


def _csv_row(row: dict[str, Any]) -> dict[str, Any]:
    preds = row.get("predictions")
    top = preds[0] if isinstance(preds, list) and preds and isinstance(preds[0], dict) else {}
    return {"input": row["input"], "model": row.get("model"), "provider": row.get("provider"),
            "task": row.get("task"), "top_index": top.get("index"), "top_label": top.get("label"),
            "top_score": top.get("score"), "predictions": None if preds is None else json.dumps(preds),
            "error": row.get("error")}


def done_inputs(path: Path) -> set[str]:
    """Inputs already present in an output file (for --resume); a torn last record is ignored."""
    if not path.exists():
        return set()
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as handle:
        if path.suffix == ".csv":
            text = handle.read()
            complete = text[:_last_record_end(text)]
            # Our own rows' predictions (every box of a detector) may be over the csv module's 128 KiB field limit.
            with _field_limit(len(complete) + 1):
                return {row["input"] for row in csv.DictReader(io.StringIO(complete, newline="")) if row.get("input")}
        done = set()
        for line in handle:
            try:
                done.add(safejson.loads(line)["input"])
            except (ValueError, KeyError, TypeError):
                continue
        return done


@contextmanager
def _field_limit(limit: int) -> Iterator[None]:
    """csv's field size limit raised to `limit` for the block (it is the process's: put back after)."""
    before = csv.field_size_limit()
    csv.field_size_limit(max(before, min(limit, sys.maxsize)))
    try:
        yield
    finally:
        csv.field_size_limit(before)


def _last_record_end(text: str) -> int:
    """Where the last complete CSV record ends: after the last newline outside quotes."""
    end, quoted = 0, False
    for i, ch in enumerate(text):
        if ch == '"':
            quoted = not quoted  # a doubled quote inside a field toggles twice: still inside
        elif ch == "\n" and not quoted:
            end = i + 1
    return end


def _trim_torn_tail(path: Path) -> None:
    """Drop a last record cut short by an interrupted run, so appended rows start on a fresh one."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as handle:
        data = handle.read()
        if path.suffix == ".csv":
            text = data.decode("utf-8", errors="surrogateescape")
            keep = len(text[:_last_record_end(text)].encode("utf-8", errors="surrogateescape"))
        elif data.endswith(b"\n"):
            return
        else:
            keep = data.rfind(b"\n") + 1
        if keep != len(data):
            handle.truncate(keep)

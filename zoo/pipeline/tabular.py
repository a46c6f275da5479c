"""Tabular models (scikit-learn via skl2onnx, XGBoost/LightGBM via onnxmltools, ...): tables in, rows out.

A table is a .csv (a header row is recognised when any of its cells is no number), a
.npy array, an array, a list of rows, or a mapping {column: values}. One graph input
[N, F] takes F columns in order; several inputs [N, 1] (converters given one input per
column) take the columns of the same names, so the header must name them. A string
input gets the column's text as it is; numeric inputs get numbers.

Outputs become one TabularPrediction per row, whatever the converter's shapes: a label
tensor with probabilities as a [N, C] tensor or a ZipMap (a list of {class: p}), or a
regressor's single [N] / [N, k] output as `value`.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.errors import InputError

if TYPE_CHECKING:
    import numpy as np

MAX_CSV_SIZE = 512 * 1024 * 1024  # a table is read whole; anything larger wants a streaming reader


@dataclass(frozen=True, slots=True)
class Column:
    """What one graph input needs: its name, feature count (None: dynamic) and element type."""

    name: str
    width: int | None
    type: str  # onnxruntime's spelling: tensor(float), tensor(string), ...


@dataclass(frozen=True, slots=True)
class TabularPrediction:
    """One row's answer: a classifier's label (with its class index and probabilities) or a regressor's value."""

    label: Any
    probabilities: tuple[tuple[Any, float], ...] = ()
    index: int | None = None  # the raw class when labels gave it a name
    value: float | tuple[float, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"label": _plain(self.label), "index": self.index,
                "probabilities": {str(k): float(v) for k, v in self.probabilities}, "value": self.value}


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def read_cells(path: str | Path) -> tuple[tuple[str, ...] | None, list[list[str]]]:
    """The header (None when the first row is all numbers) and the text cells of a .csv file."""
    p = Path(path)
    try:
        if p.stat().st_size > MAX_CSV_SIZE:
            raise InputError(f"{p} is larger than {MAX_CSV_SIZE} bytes", expected=["a smaller table"])
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {p} as a table: {getattr(exc, 'strerror', None) or exc}",
                         expected=["a UTF-8 .csv file, one row per sample"]) from None
    try:
        rows = [[c.strip() for c in row] for row in csv.reader(text.splitlines()) if any(c.strip() for c in row)]
    except csv.Error as exc:  # a cell over the csv module's 128 KiB field limit
        raise InputError(f"cannot read {p} as a table: {exc}", expected=["a .csv file of numbers, one row per sample"]
                         ) from None
    if rows and not all(_number(c) for c in rows[0]):
        return tuple(rows[0]), rows[1:]
    return None, rows


def _number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def read_table(path: str | Path, columns: Sequence[Column]) -> dict[str, np.ndarray]:
    """Feeds {input name: array} from a .npy or .csv file (InputError on missing, extra or bad columns)."""
    p = Path(path)
    if not os.path.isfile(p):  # os.path: Path.is_file() raises for a name too long
        raise InputError(f"cannot read {p}: no such file", expected=["a .npy or .csv file"])
    if p.suffix.lower() == ".npy":
        return table_feeds(_read_npy(p), columns, str(p))
    header, cells = read_cells(p)
    if not cells:
        raise InputError(f"{p} has no rows", expected=["one row per sample"])
    widths = {len(r) for r in cells}
    if len(widths) != 1 or (header is not None and widths != {len(header)}):
        raise InputError(f"{p}: rows have {sorted(widths)} cells" + (f", the header {len(header)}" if header else ""),
                         expected=["the same number of comma-separated cells on every row"])
    if len(columns) == 1:
        return {columns[0].name: _single(cells, header, columns[0], str(p))}
    return _by_name(cells, header, columns, str(p))


def _read_npy(path: Path) -> np.ndarray:
    """A .npy file's array, read only once the file is seen to hold all the bytes its header declares.

    np.load allocates what the header says before it reads: a 144-byte file that claimed
    4 x 10^11 values was a MemoryError.
    """
    import math

    import numpy as np

    expected = ["a .npy file of numbers (np.save of a numeric array)"]
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            major, _ = np.lib.format.read_magic(handle)
            read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, _, dtype = read_header(handle)
            declared, held = math.prod(shape) * dtype.itemsize, size - handle.tell()
    except (ValueError, OSError, EOFError) as exc:  # not .npy at all, or a newer format version
        raise InputError(f"cannot read {path} as an array: {getattr(exc, 'strerror', None) or exc}",
                         expected=expected) from None
    if size > MAX_CSV_SIZE:
        raise InputError(f"{path} is larger than {MAX_CSV_SIZE} bytes", expected=["a smaller table"])
    if not dtype.hasobject and declared > held:
        raise InputError(f"{path} holds {held} bytes of data, but its header declares {list(shape)} {dtype} "
                         f"values ({declared} bytes)", expected=expected)
    try:
        return np.asarray(np.load(path, allow_pickle=False))
    except (ValueError, OSError, EOFError) as exc:  # an object dtype (a pickle) is refused here
        raise InputError(f"cannot read {path} as an array: {exc}", expected=expected) from None


def _single(cells: list[list[str]], header: tuple[str, ...] | None, col: Column, source: str) -> np.ndarray:
    count = len(cells[0])
    if col.width is not None and count != col.width:
        shown = f" ({', '.join(header)})" if header else ""
        raise InputError(f"{source} has {count} columns{shown}; the model's input {col.name!r} takes {col.width}",
                         expected=[f"{col.width} columns in the order the model was trained on"])
    return _convert([[row[i] for i in range(count)] for row in cells], col, source)


def _by_name(cells: list[list[str]], header: tuple[str, ...] | None, columns: Sequence[Column],
             source: str) -> dict[str, np.ndarray]:
    names = [c.name for c in columns]
    if header is None:
        raise InputError(f"{source} has no header, but the model takes {len(columns)} named inputs",
                         expected=[f"a header row naming the columns {', '.join(names)}"])
    missing = [n for n in names if n not in header]
    extra = [h for h in header if h not in names]
    if missing or extra:
        said = "; ".join(s for s in (f"missing {', '.join(missing)}" if missing else "",
                                     f"extra {', '.join(extra)}" if extra else "") if s)
        raise InputError(f"{source}: the columns do not match the model's inputs: {said}",
                         expected=[f"exactly the columns {', '.join(names)} (any order)"])
    feeds = {}
    for col in columns:
        if col.width not in (1, None):
            raise InputError(f"input {col.name!r} takes {col.width} values per row; a CSV column holds one",
                             expected=["pass a mapping {input name: array} from Python"])
        i = header.index(col.name)
        feeds[col.name] = _convert([[row[i]] for row in cells], col, source)
    return feeds


_DTYPES = {"tensor(float)": "float32", "tensor(double)": "float64", "tensor(int64)": "int64",
           "tensor(int32)": "int32", "tensor(bool)": "bool", "tensor(string)": "object"}


def _convert(rows: Sequence[Sequence[Any]], col: Column, source: str) -> np.ndarray:
    import numpy as np

    dtype = _DTYPES.get(col.type)
    if dtype is None:
        raise InputError(f"input {col.name!r} is {col.type}, which zoo cannot fill from a table",
                         expected=["float, double, int32, int64, bool or string inputs"])
    if dtype == "object":
        return np.asarray([[str(v) for v in row] for row in rows], dtype=object)
    try:
        if dtype == "bool":
            return np.asarray([[str(v).lower() in ("1", "true", "yes", "1.0") for v in row] for row in rows])
        return np.asarray(rows, dtype=np.float64).astype(dtype)
    except (ValueError, TypeError) as exc:
        raise InputError(f"{source}: input {col.name!r} takes numbers: {exc}",
                         expected=[f"numbers in the column(s) of {col.name}"]) from None


def table_feeds(data: Any, columns: Sequence[Column], source: str) -> dict[str, np.ndarray]:
    """Feeds from an in-memory table: an array or list of rows (one input), or {column: values}."""
    import numpy as np

    if isinstance(data, Mapping):
        return _mapping_feeds(data, columns, source)
    if len(columns) != 1:
        raise InputError(f"{source}: the model takes {len(columns)} inputs ({', '.join(c.name for c in columns)})",
                         expected=["a .csv with a header naming them, or a mapping {input name: values}"])
    col = columns[0]
    arr = np.asarray(data)
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2:
        raise InputError(f"{source}: a table must be 1 or 2-dimensional, got shape {list(arr.shape)}",
                         expected=[f"rows of {col.width or 'N'} values"])
    if arr.dtype.kind in "iufb" and col.type in _DTYPES and col.type != "tensor(string)":
        return {col.name: arr.astype(_DTYPES[col.type])}
    return {col.name: _convert(arr.tolist(), col, source)}


def _mapping_feeds(data: Mapping[str, Any], columns: Sequence[Column], source: str) -> dict[str, np.ndarray]:
    import numpy as np

    names = [c.name for c in columns]
    missing, extra = [n for n in names if n not in data], [k for k in data if k not in names]
    if missing or extra:
        raise InputError(f"{source}: keys do not match the model's inputs (missing {missing}, extra {extra})",
                         expected=[f"the keys {', '.join(names)}"])
    out = {}
    for col in columns:
        arr = np.asarray(data[col.name])
        rows = arr.reshape(-1, 1) if arr.ndim == 1 else arr
        out[col.name] = _convert(rows.tolist(), col, source)
    return out


def decode(outputs: dict[str, Any], rows: int, labels: Sequence[str] | None = None) -> list[TabularPrediction] | None:
    """One result per row: classifier (label + probabilities) or regressor (value); None for other outputs."""
    import numpy as np

    names = list(outputs)
    label_name = next((n for n in names if "label" in n.lower()), None)
    prob_name = next((n for n in names if "prob" in n.lower()), None)
    if label_name is None:
        return _regression(outputs, rows)
    raw = np.asarray(outputs[label_name]).reshape(-1)
    probs: list[tuple[tuple[Any, float], ...]] = [()] * rows
    if prob_name is not None:
        given = outputs[prob_name]
        if isinstance(given, list):  # ZipMap: a sequence of {class: probability}
            probs = [tuple((_plain(k), float(v)) for k, v in row.items()) for row in given]
        else:
            arr = np.asarray(given).reshape(rows, -1)
            probs = [tuple((i, float(p)) for i, p in enumerate(row)) for row in arr]
    named = labels is not None and raw.dtype.kind in "iu" and all(0 <= int(v) < len(labels) for v in raw)
    if not named or labels is None:
        return [TabularPrediction(_plain(raw[i]), probs[i]) for i in range(rows)]

    def name(key: Any) -> Any:
        return labels[key] if isinstance(key, int) and 0 <= key < len(labels) else key

    return [TabularPrediction(labels[int(raw[i])], tuple((name(k), p) for k, p in probs[i]), index=int(raw[i]))
            for i in range(rows)]


def _regression(outputs: dict[str, Any], rows: int) -> list[TabularPrediction] | None:
    import numpy as np

    if len(outputs) != 1:
        return None
    arr = np.asarray(next(iter(outputs.values())))
    if arr.dtype.kind != "f" or arr.ndim not in (1, 2) or arr.shape[0] != rows:
        return None
    flat = arr.reshape(rows, -1)
    if flat.shape[1] == 1:
        return [TabularPrediction(None, value=float(flat[i, 0])) for i in range(rows)]
    return [TabularPrediction(None, value=tuple(float(v) for v in flat[i])) for i in range(rows)]

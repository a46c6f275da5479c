"""Non-image models (e.g. scikit-learn via skl2onnx): read tables, decode classifier outputs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.errors import InputError

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True, slots=True)
class TabularPrediction:
    """One row's answer: the predicted label and, when the model gives them, class probabilities."""

    label: Any
    probabilities: tuple[tuple[Any, float], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"label": _plain(self.label), "probabilities": {str(k): float(v) for k, v in self.probabilities}}


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def read_table(path: str | Path) -> np.ndarray:
    """A .npy array, or a .csv of numbers (a header row is skipped)."""
    import numpy as np

    p = Path(path)
    if not p.is_file():
        raise InputError(f"cannot read {p}: no such file", expected=["a .npy or .csv file of numbers"])
    if p.suffix == ".npy":
        return np.load(p, allow_pickle=False)
    try:
        lines = [ln for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()]
        rows = [ln.split(",") for ln in lines]
        if rows and not _numeric(rows[0]):
            rows = rows[1:]
        return np.asarray([[float(v) for v in row] for row in rows], dtype=np.float32)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {p} as a table of numbers: {exc}",
                         expected=["comma-separated numbers, one row per sample"]) from None


def _numeric(row: list[str]) -> bool:
    try:
        [float(v) for v in row]
    except ValueError:
        return False
    return True


def decode(outputs: dict[str, Any], rows: int) -> list[TabularPrediction] | None:
    """Classifier outputs (label tensor + probabilities as tensor or ZipMap) -> one result per row."""
    import numpy as np

    names = list(outputs)
    label_name = next((n for n in names if "label" in n.lower()), None)
    prob_name = next((n for n in names if "prob" in n.lower()), None)
    if label_name is None:
        return None
    labels = np.asarray(outputs[label_name]).reshape(-1)
    probs: list[tuple[tuple[Any, float], ...]] = [()] * rows
    if prob_name is not None:
        raw = outputs[prob_name]
        if isinstance(raw, list):  # ZipMap: a sequence of {class: probability}
            probs = [tuple((k, float(v)) for k, v in row.items()) for row in raw]
        else:
            arr = np.asarray(raw).reshape(rows, -1)
            probs = [tuple((i, float(p)) for i, p in enumerate(row)) for row in arr]
    return [TabularPrediction(labels[i], probs[i]) for i in range(rows)]

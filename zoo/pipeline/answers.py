"""What a prediction holds: one typed answer per input, whatever the task.

`Answer` is the closed union every decoder's result is turned into. Lists of
classes or detections are tuples of their own type (`Classes`, `Detections`),
so an empty answer still says what it is, and rendering dispatches on the type
instead of sniffing dictionary keys.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeAlias

from zoo.pipeline.detection import Detection
from zoo.pipeline.postprocess import Classification, Embedding, ImageResult, RawOutputs, Segmentation
from zoo.pipeline.tabular import TabularPrediction

__all__ = ["Answer", "Classes", "Classification", "Detection", "Detections", "Embedding", "ImageResult", "Plain",
           "RawOutputs", "Rows", "Segmentation", "TabularPrediction", "as_answer", "from_plain"]


class Classes(tuple[Classification, ...]):
    """Top-k classes, best first."""

    __slots__ = ()

    def to_dict(self) -> list[dict[str, Any]]:
        return [c.to_dict() for c in self]


class Detections(tuple[Detection, ...]):
    """Objects found in one image, boxes in original pixels."""

    __slots__ = ()

    def to_dict(self) -> list[dict[str, Any]]:
        return [d.to_dict() for d in self]


class Rows(tuple[TabularPrediction, ...]):
    """A tabular model's answer for one row (a tuple of one, so JSON keeps its list shape)."""

    __slots__ = ()

    def to_dict(self) -> list[dict[str, Any]]:
        return [r.to_dict() for r in self]


class Plain:
    """An answer that came back as JSON (from a Ray worker) and has no richer type to rebuild."""

    __slots__ = ("data",)

    def __init__(self, data: Any) -> None:
        self.data = data

    def to_dict(self) -> Any:
        return self.data


Answer: TypeAlias = "Classes | Detections | Segmentation | ImageResult | Embedding | Rows | RawOutputs | Plain"


def as_answer(result: object) -> Answer:
    """The typed answer for one decoder result (a list of classes or detections, or a result object)."""
    if isinstance(result, (Classes, Detections, Rows, Segmentation, ImageResult, Embedding, RawOutputs, Plain)):
        return result
    if isinstance(result, list | tuple):
        items = list(result)
        if all(isinstance(i, Detection) for i in items) and items:
            return Detections(items)
        if all(isinstance(i, Classification) for i in items) and items:
            return Classes(items)
        if all(isinstance(i, TabularPrediction) for i in items) and items:
            return Rows(items)
        if not items:
            return Detections()  # decoders return [] only when nothing was detected
    raise TypeError(f"a decoder returned {type(result).__name__}, which is not one of zoo's answer types")


def from_plain(task: str, data: Any) -> Answer:
    """Rebuild a typed answer from its to_dict() form (rows that crossed a process boundary)."""
    if isinstance(data, list) and all(isinstance(d, Mapping) for d in data):
        if all("box" in d for d in data) and (data or task in ("detection", "face-detection")):
            return Detections(Detection(int(d["index"]), d.get("label"), float(d["score"]),
                                        _box(d["box"])) for d in data)
        if data and all("score" in d and "index" in d for d in data):
            return Classes(Classification(int(d["index"]), d.get("label"), float(d["score"])) for d in data)
        if data and all("probabilities" in d for d in data):
            return Rows(TabularPrediction(d.get("label"), tuple(dict(d["probabilities"]).items()), d.get("index"),
                                          _value(d.get("value"))) for d in data)
    return Plain(data)


def _value(value: Any) -> float | tuple[float, ...] | None:
    if isinstance(value, list):
        return tuple(float(v) for v in value)
    return None if value is None else float(value)


def _box(values: Iterable[Any]) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = (float(v) for v in values)
    return x1, y1, x2, y2

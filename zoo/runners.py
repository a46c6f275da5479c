"""Runners: how one kind of input becomes feeds, and outputs become answers.

`Model` chooses one runner when it loads (`select_runner`) and asks it the same four
things for every input kind: `prepare` one input (decode + preprocess; runs in worker
threads), the largest batch one run may take (`max_batch`), the `feeds` for a group of
prepared inputs, and `decode` of one run's outputs into one list of (input name, answer)
per prepared input. A text runner (tokenized inputs) is one more class with these four
methods and one more branch in `select_runner`; nothing else changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from zoo.errors import InputError, ZooError
from zoo.index.manifest import ImageRecipe, ModelEntry, PostprocessSpec

if TYPE_CHECKING:
    import numpy as np
    from onnxruntime import NodeArg

    from zoo.pipeline.answers import Answer  # the answer types load with the first decode, not with zoo.load
    from zoo.pipeline.preprocess import Prepared, Step

DYNAMIC_BATCH_LIMIT = 64  # a dynamic batch axis still gets bounded runs: memory stays predictable


def is_int(value: object) -> bool:
    """An int, and not a bool (which is one in Python)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_count(value: object) -> bool:
    """An int of at least 1: what counts and sizes (topk, batch_size, workers) must be."""
    return is_int(value) and value >= 1  # type: ignore[operator]


@dataclass(frozen=True, slots=True)
class DecodeOptions:
    """What the caller may change about decoding."""

    topk: int | None = None
    score_threshold: float | None = None

    def __post_init__(self) -> None:
        if self.topk is not None and not is_count(self.topk):
            raise InputError(f"topk={self.topk!r}: it is how many classes to keep", expected=["an int >= 1, or None"])
        threshold = self.score_threshold
        if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))
                                      or not 0.0 <= threshold <= 1.0):
            raise InputError(f"score_threshold={threshold!r}: it is a score between 0 and 1",
                             expected=["a number from 0 to 1, or None"])


@dataclass(frozen=True, slots=True)
class Table:
    """A tabular input made ready: feeds {input name: [N, ...]}, its row count, and the name rows are shown by."""

    feeds: dict[str, np.ndarray]
    rows: int
    name: str


class Runner(Protocol):
    """The seam between Model and one input kind."""

    kind: str
    task: str

    @property
    def max_batch(self) -> int: ...

    def prepare(self, item: object) -> Any: ...

    def batch_key(self, prepared: Any) -> tuple[object, ...]: ...

    def feeds(self, prepared: Sequence[Any]) -> dict[str, np.ndarray]: ...

    def decode(self, outputs: dict[str, Any], prepared: Sequence[Any], names: Sequence[str],
               options: DecodeOptions) -> list[list[tuple[str, Answer]]]: ...


class ImageRunner:
    """Images through a preprocessing recipe; one answer per image."""

    kind = "image"

    def __init__(self, *, recipe: ImageRecipe | Step, inputs: Sequence[NodeArg], entry: ModelEntry | None,
                 labels: tuple[str, ...] | None, task: str) -> None:
        self.recipe, self.inputs, self.entry, self.labels, self.task = recipe, tuple(inputs), entry, labels, task
        self.input_name = getattr(recipe, "input", None) or self.inputs[0].name
        self.batched = bool(getattr(recipe, "has_batch_dim", True))

    @property
    def max_batch(self) -> int:
        """1 when the batch axis is fixed or absent; else the axis' size (or the dynamic limit)."""
        if not self.batched:
            return 1
        dim = self.inputs[0].shape[0] if self.inputs[0].shape else 1
        return DYNAMIC_BATCH_LIMIT if not isinstance(dim, int) or dim <= 0 else dim

    def prepare(self, item: object) -> Prepared:
        from zoo.pipeline import images, preprocess

        return preprocess.prepare(images.open_image(item), self.recipe)

    def batch_key(self, prepared: Prepared) -> tuple[object, ...]:
        return tuple(prepared.tensor.shape)

    def feeds(self, prepared: Sequence[Prepared]) -> dict[str, np.ndarray]:
        import numpy as np

        if not self.batched:
            tensor = prepared[0].tensor
        else:  # a batch of one is a view, not a copy
            tensor = prepared[0].tensor[None] if len(prepared) == 1 else np.stack([p.tensor for p in prepared])
        feeds = {self.input_name: tensor}
        for key in prepared[0].extra:
            feeds[key] = np.stack([p.extra[key] for p in prepared])
        return feeds

    def decode(self, outputs: dict[str, Any], prepared: Sequence[Prepared], names: Sequence[str],
               options: DecodeOptions) -> list[list[tuple[str, Answer]]]:
        from zoo.pipeline import postprocess

        spec = self.entry.postprocess if self.entry and self.entry.postprocess else guess_spec(outputs)
        decoded = postprocess.decode(spec, outputs, batch=len(prepared), geometries=[p.geometry for p in prepared],
                                     prepared=prepared, labels=self.labels, topk=options.topk,
                                     score_threshold=options.score_threshold)
        from zoo.pipeline.answers import as_answer

        return [[(name, as_answer(result))] for name, result in zip(names, decoded)]


class TabularRunner:
    """Tables (.csv, .npy, arrays, lists of rows, {column: values}) into a model whose inputs are all [N, F]."""

    kind = "tabular"

    def __init__(self, *, inputs: Sequence[NodeArg], labels: tuple[str, ...] | None = None) -> None:
        from zoo.pipeline.tabular import Column

        self.metas = tuple(inputs)
        self.columns = tuple(Column(m.name, m.shape[1] if isinstance(m.shape[1], int) and m.shape[1] > 0 else None,
                                    m.type) for m in self.metas)
        self.labels = labels
        self.task = "tabular"

    @property
    def max_batch(self) -> int:
        return 1  # one table per run: a table already holds many rows

    def prepare(self, item: object) -> Table:
        from zoo.pipeline import tabular

        if isinstance(item, str | Path):
            feeds = tabular.read_table(item, self.columns)
            name = str(item)
        else:
            name = "<table>" if isinstance(item, dict) else "<array>"
            feeds = tabular.table_feeds(item, self.columns, name)
        counts = {len(v) for v in feeds.values()}
        if len(counts) != 1:
            raise InputError(f"{name}: the inputs have different row counts {sorted(counts)}",
                             expected=["the same number of rows for every input"])
        return Table(feeds, counts.pop(), name)

    def batch_key(self, prepared: Table) -> tuple[object, ...]:
        return ("table", *((k, v.shape[1:]) for k, v in prepared.feeds.items()))

    def feeds(self, prepared: Sequence[Table]) -> dict[str, np.ndarray]:
        return prepared[0].feeds

    def decode(self, outputs: dict[str, Any], prepared: Sequence[Table], names: Sequence[str],
               options: DecodeOptions) -> list[list[tuple[str, Answer]]]:
        import numpy as np

        from zoo.pipeline import tabular
        from zoo.pipeline.answers import RawOutputs, Rows

        table = prepared[0]
        rows = tabular.decode(outputs, table.rows, self.labels)
        if rows is None:  # neither classifier nor regressor: the outputs as they are, one answer for the table
            return [[(table.name, RawOutputs({k: np.asarray(v) for k, v in outputs.items()}))]]
        return [[(f"{table.name}[{i}]", Rows((row,))) for i, row in enumerate(rows)]]


def guess_spec(outputs: dict[str, Any]) -> PostprocessSpec:
    """For a local model without a manifest: a [N, C] output is a classifier, else raw tensors."""
    import numpy as np

    name, value = next(iter(outputs.items()))
    arr = np.asarray(value)
    if arr.ndim == 2 and arr.shape[1] > 1 and len(outputs) == 1:
        probs = bool(arr.min() >= 0 and np.allclose(arr.sum(axis=1), 1.0, atol=1e-3))
        if probs:
            return PostprocessSpec("already-probabilities-topk", (("output", (name,)),), apply_softmax=False, topk=5)
        return PostprocessSpec("softmax-topk", (("output", (name,)),), apply_softmax=True, topk=5)
    return PostprocessSpec("tensor-output", tuple((n, (n,)) for n in outputs))


def select_runner(*, recipe: ImageRecipe | Step | None, inputs: Sequence[NodeArg], entry: ModelEntry | None,
                  labels: tuple[str, ...] | None, name: str, path: Path) -> Runner:
    """The runner for this model, chosen once: a recipe means images; one 2-D input means a table."""
    if recipe is not None:
        task = entry.task if entry else "unknown"
        return ImageRunner(recipe=recipe, inputs=inputs, entry=entry, labels=labels, task=task)
    if (entry is None or entry.preprocess is None) and inputs and all(len(i.shape) == 2 for i in inputs):
        return TabularRunner(inputs=inputs, labels=labels)
    return NoRunner(needs_recipe(entry, name, path), task=entry.task if entry else "unknown")


class NoRunner:
    """A model zoo cannot feed by itself (text without a tokenizer, an image model without a recipe)."""

    kind = "none"

    def __init__(self, error: ZooError, *, task: str) -> None:
        self.error, self.task = error, task

    @property
    def max_batch(self) -> int:
        return 1

    def prepare(self, item: object) -> Any:
        raise self.error

    def batch_key(self, prepared: Any) -> tuple[object, ...]:
        raise self.error

    def feeds(self, prepared: Sequence[Any]) -> dict[str, np.ndarray]:
        raise self.error

    def decode(self, outputs: dict[str, Any], prepared: Sequence[Any], names: Sequence[str],
               options: DecodeOptions) -> list[list[tuple[str, Answer]]]:
        raise self.error


def needs_recipe(entry: ModelEntry | None, name: str, path: Path) -> ZooError:
    """Why predict() cannot run this model, and what to do instead."""
    from zoo.pipeline import preprocess

    if entry is not None and entry.preprocess is not None and entry.preprocess.kind == "text":
        r = entry.preprocess
        needs = "; ".join(f"{k}: {v}" for k, v in r.inputs)
        return ZooError(f"{name} is a text model: predict() needs tokenized inputs "
                        f"({r.tokenizer or 'a tokenizer'}; vocabulary: {r.vocab or 'not shipped with zoo'})",
                        hint=f"tokenize yourself and call model.run({{...}}) with {needs}")
    names = ", ".join(preprocess.names())
    return ZooError(f"{name} has no preprocessing recipe, so zoo cannot turn an input into its feeds",
                    hint=f"pass --recipe (one of {names}) and, for class names, --labels; e.g. "
                         f"zoo predict {path} IMAGE --recipe NAME. `zoo info MODEL` shows a zoo model's recipe.")

"""The predict pipeline: decode inputs, batch where the model allows, run, postprocess."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from zoo.index.manifest import PostprocessSpec

if TYPE_CHECKING:
    from zoo.api import Model, Prediction


def predict(model: Model, items: Sequence[Any], *, topk: int | None, score_threshold: float | None) -> list[Prediction]:
    """One Prediction per item, in order."""
    from zoo.pipeline import images

    if model._is_tabular():
        return _predict_tabular(model, items)
    if model.recipe is None:
        raise model._needs_recipe()
    out: list[Prediction] = []
    for group in _batches(model, [(item, model._prepare(images.open_image(item))) for item in items]):
        out.extend(run_group(model, group, topk=topk, score_threshold=score_threshold))
    return out


def max_batch(model: Model) -> int:
    """How many images one run may take: 1 when the batch axis is fixed or absent."""
    if not getattr(model.recipe, "has_batch_dim", True):
        return 1
    dim = model._input_metas[0].shape[0]
    return 64 if not isinstance(dim, int) or dim <= 0 else dim


def _batches(model: Model, prepared: list[tuple[Any, Any]]) -> Iterator[list[tuple[Any, Any]]]:
    """Consecutive items with equal tensor shapes, up to max_batch each."""
    limit = max_batch(model)
    group: list[tuple[Any, Any]] = []
    for item in prepared:
        if group and (len(group) >= limit or item[1].tensor.shape != group[0][1].tensor.shape):
            yield group
            group = []
        group.append(item)
    if group:
        yield group


def run_group(model: Model, group: list[tuple[Any, Any]], *, topk: int | None,
               score_threshold: float | None) -> list[Prediction]:
    """Run one batch of (item, Prepared) pairs; one Prediction per item."""
    from zoo.api import Prediction
    from zoo.pipeline import postprocess
    from zoo.pipeline.images import describe

    prepared = [p for _, p in group]
    outputs = model.run(model._feeds(prepared))
    spec = model.entry.postprocess if model.entry and model.entry.postprocess else guess_spec(model, outputs)
    decoded = postprocess.decode(spec, outputs, batch=len(group), geometries=[p.geometry for p in prepared],
                                 prepared=prepared, labels=model.labels, topk=topk, score_threshold=score_threshold)
    return [Prediction(describe(item), model.name, model.report.primary, model.task, result)
            for (item, _), result in zip(group, decoded)]


def guess_spec(model: Model, outputs: dict[str, Any]) -> PostprocessSpec:
    """For a local model without a manifest: a [N, C] output is a classifier, else raw tensors."""
    import numpy as np

    name, value = next(iter(outputs.items()))
    arr = np.asarray(value)
    if arr.ndim == 2 and arr.shape[1] > 1 and len(outputs) == 1:
        probs = bool(arr.min() >= 0 and np.allclose(arr.sum(axis=1), 1.0, atol=1e-3))
        kind = "already-probabilities-topk" if probs else "softmax-topk"
        return PostprocessSpec(kind, ((("output", (name,))),), apply_softmax=not probs, topk=5)
    return PostprocessSpec("tensor-output", tuple((n, (n,)) for n in outputs))


def _predict_tabular(model: Model, items: Sequence[Any]) -> list[Prediction]:
    import numpy as np

    from zoo.api import Prediction
    from zoo.pipeline import tabular

    meta = model._input_metas[0]
    rows = []
    for item in items:
        arr = tabular.read_table(item) if isinstance(item, str) or hasattr(item, "__fspath__") else item
        arr = np.asarray(arr)
        rows.append(arr.reshape(1, -1) if arr.ndim == 1 else arr)
    table = np.concatenate(rows) if rows else np.zeros((0, 0))
    if meta.type == "tensor(float)" and table.dtype.kind in "iuf":
        table = table.astype(np.float32)
    outputs = model.run({meta.name: table})
    decoded = tabular.decode(outputs, len(table))
    name = str(items[0]) if len(items) == 1 and isinstance(items[0], str) else "<array>"
    if decoded is None:
        from zoo.pipeline import postprocess

        return [Prediction(name, model.name, model.report.primary, "tensor",
                           postprocess.RawOutputs({k: np.asarray(v) for k, v in outputs.items()}))]
    return [Prediction(f"{name}[{i}]", model.name, model.report.primary, "tabular", [row])
            for i, row in enumerate(decoded)]

"""Public Python API: thin glue over index, cache and sources."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo.errors import ZooError
from zoo.index.catalog import load_index
from zoo.store import cache, sources
from zoo.store.pull import pull_entry, test_data_dir

__all__ = ["Model", "ModelInfo", "Prediction", "info", "list_models", "load", "load_index", "pull", "resolve",
           "search"]
from zoo.index.manifest import ModelEntry


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """A resolved model: its manifest entry, how the name resolved, sources and cache state."""

    entry: ModelEntry
    resolved_from: str | None
    sources: tuple[str, ...]
    cached_path: str | None

    def __getattr__(self, name: str) -> Any:
        # Manifest facts read through: info.sha256, info.opset, info.inputs ...
        return getattr(self.entry, name)

    def to_dict(self) -> dict[str, Any]:
        out = self.entry.to_dict()
        out.update(resolved_from=self.resolved_from, sources=list(self.sources), cached_path=self.cached_path)
        return out


def list_models(task: str | None = None, tag: str | None = None) -> list[ModelEntry]:
    """Models in the index, optionally only one task and/or tag."""
    return load_index().filter(task=task, tag=tag)


def search(text: str) -> list[ModelEntry]:
    """Models whose id, aliases, hub name, tags, family or task contain `text`."""
    return load_index().search(text)


def resolve(name: str, opset: int | None = None) -> ModelEntry:
    """The manifest entry for a name (id, alias or hub name)."""
    return load_index().resolve(name, opset).entry


def info(name: str, opset: int | None = None) -> ModelInfo:
    """Everything about one model, including where it would be fetched from."""
    resolution = load_index().resolve(name, opset)
    entry = resolution.entry
    path = cache.cached_path(entry)
    return ModelInfo(
        entry=entry,
        resolved_from=resolution.note,
        sources=tuple(s.url for s in sources.plan(entry)),
        cached_path=None if path is None else str(path),
    )


def pull(name: str, opset: int | None = None, with_test_data: bool = False, *, mirrors: Sequence[str] = (),
         force: bool = False, progress: bool | None = None) -> Path:
    """Download (or find in the cache) a model's verified file; returns its local path."""
    return pull_entry(resolve(name, opset), with_test_data=with_test_data, mirrors=mirrors, force=force,
                      progress=progress)[0].path


@dataclass(frozen=True, slots=True)
class Prediction:
    """The answer for one input."""

    input: str
    model: str
    provider: str
    task: str
    predictions: Any

    def to_dict(self) -> dict[str, Any]:
        preds = self.predictions
        # Predictions are result objects, or already plain dicts (rows back from Ray actors).
        plain = ([p.to_dict() if hasattr(p, "to_dict") else p for p in preds] if isinstance(preds, list)
                 else preds.to_dict() if hasattr(preds, "to_dict") else preds)
        return {"input": self.input, "model": self.model, "provider": self.provider, "task": self.task,
                "predictions": plain}


class Model:
    """A loaded model: session, recipe, labels; predict() runs the three stages."""

    def __init__(self, *, path: Path, entry: ModelEntry | None, session: Any, report: Any,
                 recipe: Any, labels: tuple[str, ...] | None) -> None:
        self.path, self.entry, self.session, self.report = path, entry, session, report
        self.recipe, self.labels = recipe, labels
        # Fetched once: ORT builds new NodeArg objects on every get_inputs()/get_outputs() call.
        self._input_metas = tuple(session.get_inputs())
        self._output_names = [o.name for o in session.get_outputs()]

    def __repr__(self) -> str:
        return f"<zoo.Model {self.name} on {self.report.primary}>"

    @property
    def name(self) -> str:
        return self.entry.id if self.entry else self.path.name

    @property
    def info(self) -> ModelEntry | None:
        return self.entry

    @property
    def providers(self) -> list[str]:
        """What onnxruntime actually uses, best first."""
        return list(self.report.used)

    @property
    def inputs(self) -> list[Any]:
        return list(self._input_metas)

    @property
    def outputs(self) -> list[Any]:
        return list(self.session.get_outputs())

    @property
    def task(self) -> str:
        return self.entry.task if self.entry else ("tabular" if self._is_tabular() else "unknown")

    def run(self, feeds: dict[str, Any]) -> dict[str, Any]:
        """Run raw feeds (checked against the graph inputs); outputs by name."""
        from zoo import runtime

        runtime.check_feeds(self.session, feeds, metas=self._input_metas)
        return dict(zip(self._output_names, self.session.run(self._output_names, feeds)))

    def preprocess(self, image: Any) -> dict[str, Any]:
        """Feeds for one image (batch axis added where the model has one)."""
        from zoo.pipeline import images

        prepared = self._prepare(images.open_image(image))
        return self._feeds([prepared])

    def predict(self, x: Any, *, topk: int | None = None, score_threshold: float | None = None) -> Any:
        """Answer for one input (image path, PIL image, array) or a list of them."""
        from zoo import predict as engine

        # A 2-D table fed to a tabular model is many rows: one answer per row.
        many = isinstance(x, list) or (self._is_tabular() and getattr(x, "ndim", 1) == 2)
        items = list(x) if many and not isinstance(x, list) else (x if many else [x])
        results = engine.predict(self, items, topk=topk, score_threshold=score_threshold)
        return results if many else results[0]

    def predict_iter(self, items: Any, *, batch_size: int = 16, workers: int | None = None,
                     topk: int | None = None, score_threshold: float | None = None) -> Any:
        """Predictions (or batch.Failure rows) for many inputs, in input order, streaming.

        Decoding runs in a thread pool while the model runs; only a few batches of
        decoded images exist at a time. Load with `spinning=False` for long runs: the
        session's idle threads then leave the cores to the decoding threads.
        """
        from zoo import batch

        return batch.predict_iter(self, items, batch_size=batch_size, workers=workers, topk=topk,
                                  score_threshold=score_threshold)

    def check(self, test_data: str | Path | None = None) -> Any:
        """Run the zoo's test sets (pulled with the model's test-data archive, or a folder) -> CheckReport."""
        from zoo import check

        sets = check.find_sets(self._test_data_folder(test_data))
        if not sets:
            raise check.no_sets_error(self._test_data_folder(test_data))
        variant = self.entry.variant if self.entry else None
        scales = check.output_scales(self.path) if variant in ("int8", "qdq") else None
        return check.run_sets(self.session, sets, model=self.name, provider=self.report.primary, variant=variant,
                              scales=scales)

    def _test_data_folder(self, test_data: str | Path | None) -> Path:
        if test_data is not None:
            return Path(test_data)
        if self.entry is None or self.entry.test_data is None:
            raise ZooError(f"{self.name} has no test-data archive in the index",
                           hint="pass a folder with test_data_set_*/ (zoo check NAME --test-data DIR)")
        folder = test_data_dir(self.entry)
        if not folder.is_dir():
            pull_entry(self.entry, with_test_data=True)
        return folder

    def _is_tabular(self) -> bool:
        inputs = self._input_metas
        return self.recipe is None and len(inputs) == 1 and len(inputs[0].shape) == 2

    def _prepare(self, img: Any) -> Any:
        from zoo.pipeline import preprocess

        if self.recipe is None:
            raise self._needs_recipe()
        return preprocess.prepare(img, self.recipe)

    def _feeds(self, prepared: list[Any]) -> dict[str, Any]:
        import numpy as np

        first = self._input_metas[0].name
        name = getattr(self.recipe, "input", None) or first
        batched = getattr(self.recipe, "has_batch_dim", True)
        if not batched:
            tensor = prepared[0].tensor
        else:  # a batch of one is a view, not a copy
            tensor = prepared[0].tensor[None] if len(prepared) == 1 else np.stack([p.tensor for p in prepared])
        feeds = {name: tensor}
        for key in prepared[0].extra:
            feeds[key] = np.stack([p.extra[key] for p in prepared])
        return feeds

    def _needs_recipe(self) -> ZooError:
        if self.entry is not None and self.entry.preprocess is not None and self.entry.preprocess.kind == "text":
            r = self.entry.preprocess
            needs = "; ".join(f"{k}: {v}" for k, v in r.inputs)
            return ZooError(f"{self.name} is a text model: predict() needs tokenized inputs "
                            f"({r.tokenizer or 'a tokenizer'}; vocabulary: {r.vocab or 'not shipped with zoo'})",
                            hint=f"tokenize yourself and call model.run({{...}}) with {needs}")
        names = ", ".join(preprocess_names())
        return ZooError(f"{self.name} has no preprocessing recipe, so zoo cannot turn an image into its input",
                        hint=f"pass recipe= (one of {names}, or an ImageRecipe), e.g. "
                             f"zoo predict {self.path} IMAGE --recipe imagenet")


def preprocess_names() -> list[str]:
    from zoo.pipeline import preprocess

    return preprocess.names()


def load(name_or_path: str | Path, *, opset: int | None = None, providers: str | Sequence[str] | None = None,
         recipe: Any = None, labels: str | Sequence[str] | None = None, threads: int | None = None,
         strict_provider: bool = False, optimization: str | None = None, progress: bool | None = None,
         spinning: bool | None = None) -> Model:
    """Load a zoo model by name (pulled if not cached) or a local .onnx file, ready to predict.

    `optimization` defaults to "all", except for QDQ models: their graphs define
    fake-quantized float numerics, and ORT's extended fusions swap in integer kernels
    that round differently (shufflenet-v2-12-qdq then calls a banana a hotdog), so
    they get "basic" unless asked otherwise.
    """
    from zoo import runtime
    from zoo.index import labels as label_sets
    from zoo.pipeline import preprocess

    entry, path = _locate(name_or_path, opset, progress)
    if optimization is None:
        optimization = "basic" if entry is not None and entry.variant == "qdq" else "all"
    spec = runtime.SessionSpec(providers=_tuple(runtime.parse_providers(providers)), threads=threads,
                               optimization=optimization, strict=strict_provider, spinning=spinning)
    key = entry.sha256 if entry else _local_key(path)
    session, rep = runtime.create_session(path, spec, cache_dir=cache.home() / "optimized", cache_key=key)
    if isinstance(recipe, str):
        recipe = preprocess.get(recipe)
    if recipe is None and entry is not None and entry.preprocess is not None and entry.preprocess.kind != "text":
        recipe = entry.preprocess
    elif isinstance(recipe, preprocess.ImageRecipe):
        recipe = preprocess.with_input(recipe, _fixed_hw(session, recipe))
    if isinstance(labels, str):
        labels = label_sets.load(labels)
    elif labels is None and entry is not None and entry.labels:
        labels = label_sets.load(entry.labels)
    return Model(path=path, entry=entry, session=session, report=rep, recipe=recipe,
                 labels=None if labels is None else tuple(labels))


def _tuple(value: list[str] | None) -> tuple[str, ...] | None:
    return None if value is None else tuple(value)


def _locate(name_or_path: str | Path, opset: int | None, progress: bool | None) -> tuple[ModelEntry | None, Path]:
    text = str(name_or_path)
    path = Path(text).expanduser()
    if isinstance(name_or_path, Path) or text.endswith(".onnx") or path.is_file():
        if not path.is_file():
            from zoo.errors import InputError

            raise InputError(f"no such model file: {path}", expected=["a path to an .onnx file, or a zoo model name"])
        return None, path
    entry = resolve(text, opset)
    cached = cache.cached_path(entry)
    return entry, cached if cached is not None else pull_entry(entry, progress=progress)[0].path


def _local_key(path: Path) -> str:
    import hashlib

    st = path.resolve().stat()
    return "local-" + hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:32]


def _fixed_hw(session: Any, recipe: Any) -> tuple[int, int] | None:
    shape = session.get_inputs()[0].shape
    if len(shape) != 4:
        return None
    h, w = (shape[1], shape[2]) if recipe.layout == "NHWC" else (shape[2], shape[3])
    return (h, w) if isinstance(h, int) and isinstance(w, int) else None


def check_providers(name_or_path: str | Path, *, opset: int | None = None, test_data: str | Path | None = None,
                    providers: Sequence[str] | None = None) -> list[Any]:
    """Each provider (default: every available one but CPU) against CPU on the model's test inputs."""
    import onnxruntime as ort

    from zoo import check

    reference = load(name_or_path, opset=opset, providers="cpu")
    sets = check.find_sets(reference._test_data_folder(test_data))
    wanted = providers or [p for p in ort.get_available_providers() if p not in ("CPUExecutionProvider",
                                                                                   "AzureExecutionProvider")]
    variant = reference.entry.variant if reference.entry else None
    reports = []
    for provider in wanted:
        other = load(name_or_path, opset=opset, providers=[provider], strict_provider=True)
        reports.append(check.against_provider(other.session, reference.session, sets, model=other.name,
                                              provider=other.report.primary, reference_name="CPUExecutionProvider",
                                              variant=variant))
    return reports

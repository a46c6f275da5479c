"""Public Python API: thin glue over index, cache and sources."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.errors import ZooError
from zoo.index.catalog import Resolution, load_index
from zoo.index.manifest import ImageRecipe, ModelEntry
from zoo.prediction import Failure, Prediction
from zoo.store import cache, index_cache, sources
from zoo.store.pull import pull_entry, test_data_dir

if TYPE_CHECKING:
    from zoo.model import Located, Model, load, locate
    from zoo.store.add import AddResult, RemoveResult
    from zoo.store.recorded import TestDataResult

__all__ = [
    "AddResult",
    "Failure",
    "Located",
    "Model",
    "ModelInfo",
    "Prediction",
    "RemoveResult",
    "add",
    "info",
    "list_models",
    "load",
    "load_index",
    "locate",
    "pull",
    "pull_entry",
    "remove",
    "resolve",
    "resolve_name",
    "search",
    "test_data_dir",
]


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
    return index_cache.resolve(name, opset).entry


def resolve_name(name: str, opset: int | None = None) -> Resolution:
    """How a name resolves (entry and the note saying how), read from the compiled index."""
    return index_cache.resolve(name, opset)


def info(name: str, opset: int | None = None) -> ModelInfo:
    """Everything about one model, including where it would be fetched from.

    `name` may also be a file path (as zoo.load takes): a zoo model's file is known by its sha256.
    """
    from zoo.filecheck import looks_like_path
    from zoo.model import locate

    if looks_like_path(name):
        located = locate(name)  # InputError when there is no such file
        if located.entry is None:
            raise ZooError(f"{name} is no zoo model's file: its sha256 matches none of the catalogue's",
                           hint=f"zoo info describes zoo models (`zoo list`); to run the file as it is: "
                                f"zoo predict {name} IMAGE")
        entry, note = located.entry, located.note
    else:
        resolution = index_cache.resolve(name, opset)
        entry, note = resolution.entry, resolution.note
    path = cache.cached_path(entry)
    return ModelInfo(
        entry=entry,
        resolved_from=note,
        sources=tuple(s.url for s in sources.plan(entry)),
        cached_path=None if path is None else str(path),
    )


def pull(name: str, opset: int | None = None, with_test_data: bool = False, *, mirrors: Sequence[str] = (),
         force: bool = False, progress: bool | None = None, connections: int | None = None) -> Path:
    """Download (or find in the cache) a model's verified file; returns its local path.

    `connections`: parallel Range requests per file (None: automatic, see zoo.store.ranges).
    """
    return pull_entry(resolve(name, opset), with_test_data=with_test_data, mirrors=mirrors, force=force,
                      progress=progress, connections=connections)[0].path


def check_providers(name_or_path: str | Path, *, opset: int | None = None, test_data: str | Path | None = None,
                    providers: Sequence[str] | None = None) -> list[Any]:
    """Each provider (default: every available one but CPU) against CPU on the model's test inputs."""
    import onnxruntime as ort

    from zoo import check
    from zoo.model import load

    reference = load(name_or_path, opset=opset, providers="cpu")
    sets = check.find_sets(reference.test_data_folder(test_data))
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


def add(path: str | Path, model_id: str, *, task: str | None = None, recipe: str | ImageRecipe | None = None,
        labels: str | Sequence[str] | None = None, postprocess: str | None = None,
        manifest: str | Path | None = None, test_inputs: Sequence[str | Path] = ()) -> AddResult:
    """Make a local .onnx a zoo model `model_id`: verified cache entry + user manifest entry (`zoo add`).

    `test_inputs` (images, .csv/.npy rows) are run once through the added model and kept as its
    test set, so `zoo check ID` works; when that fails, the entry goes back to what it was.
    """
    from dataclasses import replace

    from zoo.pipeline import preprocess
    from zoo.store.add import add_model, previous_entry, restore_entry

    def named(hw: tuple[int, int] | None) -> ImageRecipe:  # a registered recipe, fitted to the input size
        chosen = preprocess.get(str(recipe))
        if not isinstance(chosen, ImageRecipe):
            raise ZooError(f"recipe {recipe!r} is a function; a manifest holds only declarative recipes",
                           hint="pass an ImageRecipe or --recipe-json FILE")
        return preprocess.with_input(chosen, hw)

    target = None if manifest is None else Path(manifest)
    previous = previous_entry(model_id, target) if test_inputs else None
    result = add_model(Path(path), model_id, task=task, recipe=named if isinstance(recipe, str) else recipe,
                       labels=labels, postprocess=postprocess, manifest=target)
    if not test_inputs:
        return result
    try:
        recorded = record_test_inputs(result.entry.id, test_inputs, manifest=result.manifest)
    except BaseException:  # nothing half-done: the entry goes back to what it was before this add
        restore_entry(result.entry.id, previous, result.manifest)
        raise
    return replace(result, entry=recorded.entry, recorded=recorded)


def record_test_inputs(model_id: str, inputs: Sequence[str | Path], *, manifest: Path) -> TestDataResult:
    """Load an added model as `zoo predict` does, run it once per input, and keep feeds and outputs as its test set."""
    from zoo.model import load
    from zoo.store.recorded import RecordedSet, record_test_data, storable_outputs

    loaded = load(model_id)
    loaded.ensure_runnable()  # e.g. an image model added without a recipe: say so, as predict does
    order = [meta.name for meta in loaded.input_metas]
    sets: list[RecordedSet] = []
    skipped: tuple[str, ...] = ()
    for item in inputs:
        feeds = loaded.feeds([loaded.prepare(str(item))])  # prepared exactly as predict prepares it
        outputs, skipped = storable_outputs(list(loaded.run(feeds).items()))
        sets.append(RecordedSet(tuple((name, feeds[name]) for name in order), outputs))
    return record_test_data(model_id, sets, manifest=manifest, skipped=skipped)


def remove(model_id: str, *, manifest: str | Path | None = None, keep_files: bool = False) -> RemoveResult:
    """Undo `add`: the user manifest entry goes, and (unless keep_files) its cached files."""
    from zoo.store.add import remove_model

    return remove_model(model_id, manifest=None if manifest is None else Path(manifest), keep_files=keep_files)


_RUN_STAGE = frozenset({"Located", "Model", "load", "locate"})


def __getattr__(name: str) -> Any:
    # The run stage (zoo.model: runtime, runners, the store's pull path) loads on first use, so that
    # `zoo list`, `zoo info` and `zoo --help`, which import this module, do not pay for it.
    if name in _RUN_STAGE:
        from zoo import model

        return getattr(model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

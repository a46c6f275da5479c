"""Public Python API: thin glue over index, cache and sources."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from zoo import cache, sources
from zoo.index import load_index
from zoo.manifest import ModelEntry


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

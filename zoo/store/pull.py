"""Get a model's verified files into the cache: plan sources, fetch each, extract its test data."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from zoo.store import cache, sources

if TYPE_CHECKING:
    from zoo.index.manifest import ModelEntry
    from zoo.store.download import FetchResult


def pull_entry(entry: ModelEntry, *, with_test_data: bool = False, mirrors: Sequence[str] = (), force: bool = False,
               progress: bool | None = None) -> list[FetchResult]:
    """FetchResults for the model file (and test data, extracted) of one entry."""
    from zoo.store import download

    files = [entry.file] + ([entry.test_data] if with_test_data and entry.test_data else [])
    results = []
    for file in files:
        plan = sources.plan(entry, file, extra_mirrors=mirrors)
        results.append(download.fetch(entry, file, sources=plan, force=force, progress=progress))
    if with_test_data and entry.test_data is not None and (results[1].downloaded or not test_data_dir(entry).is_dir()):
        from zoo.store import archive

        archive.safe_extract(results[1].path, test_data_dir(entry))
    return results


def test_data_dir(entry: ModelEntry) -> Path:
    """Where a model's test-data archive is extracted."""
    return cache.home() / "models" / entry.id / "test_data"

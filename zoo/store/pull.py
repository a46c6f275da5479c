"""Get a model's verified files into the cache: plan sources, fetch each, extract its test data.

Extracted test data is used only when it is whole: its extraction record (archive.RECORD) lists
every file, and a folder that lost some, or has no record (extracted by an older zoo), is
extracted again from the verified archive before use.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from zoo.errors import CacheError, ZooError
from zoo.store import cache, sources

if TYPE_CHECKING:
    from zoo.index.manifest import ModelEntry
    from zoo.store.download import FetchResult


def pull_entry(entry: ModelEntry, *, with_test_data: bool = False, mirrors: Sequence[str] = (), force: bool = False,
               progress: bool | None = None, connections: int | None = None) -> list[FetchResult]:
    """FetchResults for the model file (and test data, extracted) of one entry.

    connections: parallel Range requests per file (None: download.fetch's automatic choice).
    """
    from zoo.store import download

    files = [entry.file] + ([entry.test_data] if with_test_data and entry.test_data else [])
    results = []
    for file in files:
        plan = sources.plan(entry, file, extra_mirrors=mirrors)
        results.append(download.fetch(entry, file, sources=plan, force=force, progress=progress,
                                      connections=connections))
    if with_test_data and entry.test_data is not None:
        problem = test_data_problem(entry)
        if results[1].downloaded or problem is not None:
            if problem is not None and problem != "it is not extracted yet":
                _note(f"{entry.id}: test data at {test_data_dir(entry)} {problem}; extracting it again")
            _extract(entry, results[1].path)
    return results


def test_data_dir(entry: ModelEntry) -> Path:
    """Where a model's test-data archive is extracted."""
    return cache.home() / "models" / entry.id / "test_data"


def test_data_problem(entry: ModelEntry) -> str | None:
    """Why the extracted test data of `entry` cannot be used as it is (stat only), or None when it is whole."""
    from zoo.store import archive

    folder = test_data_dir(entry)
    if not folder.is_dir() or folder.is_symlink():
        return "it is not extracted yet"
    missing = archive.missing_members(folder)
    if missing is None:
        return "has no extraction record (extracted by an older zoo, or damaged)"
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        return f"is incomplete: {len(missing)} extracted files are missing or changed ({shown})"
    return None


def ensure_test_data(entry: ModelEntry) -> Path:
    """The extracted test data of `entry`, whole: extracted (pulling the archive when needed) or restored first.

    Raises CacheError (exit 2) when an incomplete folder cannot be restored, e.g. in a read-only cache.
    """
    problem = test_data_problem(entry)
    if problem is None:
        return test_data_dir(entry)
    try:
        pull_entry(entry, with_test_data=True)
    except (ZooError, OSError) as exc:
        if problem == "it is not extracted yet":
            raise
        if problem.startswith("has no extraction record"):
            # Extracted by an older zoo into a cache that is now read-only: nothing says it is incomplete.
            _note(f"{entry.id}: cannot check that {test_data_dir(entry)} is complete ({_reason(exc)}); "
                  "using it as it is")
            return test_data_dir(entry)
        raise CacheError(f"the test data of {entry.id} at {test_data_dir(entry)} {problem}, and it cannot be "
                         f"restored here: {_reason(exc)}",
                         hint=f"run `zoo pull {entry.id} --with-test-data` where the cache is writable, or pass "
                              "a complete folder with --test-data DIR") from exc
    return test_data_dir(entry)


def entry_for_test_data(folder: Path) -> ModelEntry | None:
    """The index entry whose extracted test data lives at `folder` (ZOO_HOME/models/<id>/test_data), if any."""
    from zoo.index.catalog import load_index

    folder = Path(folder)
    try:
        if folder.name != "test_data" or folder.resolve().parent.parent != cache.home() / "models":
            return None
    except OSError:
        return None
    model_id = folder.resolve().parent.name
    return next((e for e in load_index().entries if e.id == model_id and e.test_data is not None), None)


def _extract(entry: ModelEntry, archive_path: Path) -> None:
    from zoo.store import archive

    root = cache.home()
    cache.real_dir(root, "models", entry.id)  # never extract through a link planted at models/<id>
    archive.safe_extract(archive_path, test_data_dir(entry))


def _reason(exc: Exception) -> str:
    return exc.what if isinstance(exc, ZooError) else (getattr(exc, "strerror", None) or str(exc))


def _note(message: str) -> None:
    sys.stderr.write(f"zoo: {message}\n")

"""Bring files downloaded by hand into the cache (`zoo cache import`).

A file is identified by its sha256 and size against every model file and
test-data archive in the index (or one model's, with --id); download.import_file
then copies it into the blob store, verifying it again while copying, so the
cache only ever holds verified bytes. A file that matches nothing is refused
with the cache and the file left as they were.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.errors import CacheError, DownloadError
from zoo.filecheck import not_a_file
from zoo.store import cache
from zoo.store.cache_scan import Kind
from zoo.store.hashing import sha256_file

if TYPE_CHECKING:
    from zoo.index.manifest import FileEntry, ModelEntry
    from zoo.store.download import FetchResult


@dataclass(frozen=True, slots=True)
class ImportResult:
    """One local file published into the cache, for each model it serves."""

    source: Path
    sha256: str
    size: int
    files: tuple[FetchResult, ...]
    kinds: tuple[Kind, ...]
    extracted: tuple[Path, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"file": str(self.source), "sha256": self.sha256, "bytes": self.size,
                "imported": [{**r.to_dict(), "kind": k} for r, k in zip(self.files, self.kinds)],
                "extracted": [str(p) for p in self.extracted]}


def matches(sha256: str, size: int, entries: Iterable[ModelEntry]) -> list[tuple[ModelEntry, FileEntry, Kind]]:
    """The (entry, file, kind) that a file with this sha256 and size is."""
    out: list[tuple[ModelEntry, FileEntry, Kind]] = []
    for e in entries:
        for kind, f in (("model", e.file), ("test-data", e.test_data)):
            if f is not None and (f.sha256, f.size) == (sha256, size):
                out.append((e, f, kind))  # type: ignore[arg-type]
    return out


def import_local(path: Path, index_entries: Sequence[ModelEntry], *, entry: ModelEntry | None = None,
                 extract_to: Callable[[ModelEntry], Path] | None = None) -> ImportResult:
    """Identify a local file by its sha256 (against `entry` only, when given) and publish it into the cache.

    A test-data archive is also extracted into extract_to(entry). Raises CacheError when `path` is not a
    file, DownloadError (the cache and the file left as they were) when it matches no model.
    """
    from zoo.store import (
        archive,
        download,  # the CLI starts without them
    )

    path = Path(path)
    if not os.path.isfile(path):  # os.path: Path.is_file() raises for a name too long
        raise CacheError(f"cannot import {path}: {not_a_file(path)}", hint="pass the path of a downloaded model file")
    sha256, size = sha256_file(path)
    found = matches(sha256, size, [entry] if entry is not None else index_entries)
    if not found:
        raise _no_match(path, sha256, size, entry, matches(sha256, size, index_entries) if entry else [])
    # One copy into the blob store (verified again while copying) unless the bytes are there already; every
    # other model using the same bytes gets its view from the cache (offline fetch: a hit, no re-hash).
    (entry0, file0, _), *rest = found
    if cache.blob_path(sha256).is_file():
        files = [download.fetch(entry0, file0, offline=True)]
    else:
        files = [download.import_file(entry0, file0, path)]
    files += [download.fetch(e, f, offline=True) for e, f, _ in rest]
    extracted = []
    for (e, _, kind), result in zip(found, files):
        if kind == "test-data" and extract_to is not None:
            dest = extract_to(e)
            if dest.parent.parent == cache.home() / "models":  # never extract through a link at models/<id>
                cache.real_dir(cache.home(), "models", dest.parent.name)
            extracted.append(archive.safe_extract(result.path, dest))
    return ImportResult(path, sha256, size, tuple(files), tuple(k for _, _, k in found), tuple(extracted))


def _no_match(path: Path, sha256: str, size: int, entry: ModelEntry | None,
              elsewhere: list[tuple[ModelEntry, FileEntry, Kind]]) -> DownloadError:
    got = f"sha256 {sha256} ({size} bytes)"
    if entry is None:
        return DownloadError(
            f"{path} matches no model in the index: {got}",
            hint="nothing was imported and the file was left as it is; check it is the right download "
                 "(`zoo info NAME` shows the expected sha256), or add it to a manifest listed in ZOO_MANIFESTS")
    expected = f"model file sha256 {entry.file.sha256} ({entry.file.size} bytes)"
    if entry.test_data is not None:
        expected += f" or test data sha256 {entry.test_data.sha256} ({entry.test_data.size} bytes)"
    hint = "nothing was imported and the file was left as it is; "
    if elsewhere:
        hint += f"it is the {elsewhere[0][2]} of {elsewhere[0][0].id}: drop --id, or pass --id {elsewhere[0][0].id}"
    else:
        hint += f"download {entry.file.path} again and retry"
    return DownloadError(f"{path} is not {entry.id}: expected {expected}, got {got}", hint=hint)

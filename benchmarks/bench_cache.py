"""Cache hit: zoo.pull / zoo.store.download.fetch on a cached model vs huggingface_hub's offline cache lookup.

The zoo cache is seeded with download.import_file from ../shared; the
Hugging Face cache by one hf_hub_download from a loopback fake hub. A hit must
not re-hash the file: hashlib.sha256 (and hashlib.new) are wrapped to count
every hash object made during the timed calls.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks._common import Config, Row, compare, environ, median, ms, scratch, seeded_home, timed, value_at_most
from benchmarks._server import FileServer

NAME = "cache"
MODEL_ID = "mobilenetv2-12-int8"
REPO_ID = f"onnxmodelzoo/{MODEL_ID}"


def run(cfg: Config) -> list[Row]:
    calls = cfg.pick(50, 10)
    with scratch("cache") as work, environ(ZOO_HOME=str(work / "zoo")):
        entry, path = seeded_home(work / "zoo", MODEL_ID)
        try:
            hf_hit, why = _hf_hit(work / "hf", path, entry.sha256), ""
        except Exception as exc:
            hf_hit, why = None, f"{type(exc).__name__}: {exc}"
        return _zoo_rows(entry, calls, hf_hit, why)


def _zoo_rows(entry: Any, calls: int, hf_hit: Callable[[], Any] | None, why: str) -> list[Row]:
    import zoo
    from zoo.store import download

    pull = lambda: zoo.pull(MODEL_ID)  # noqa: E731
    fetch = lambda: _checked_fetch(download, entry)  # noqa: E731
    pull(), fetch()  # first calls import and build the index; the cache is what is measured
    base = median([timed(hf_hit)[0] for _ in range(calls)]) if hf_hit else None
    with counting_sha256() as made:
        pull_s = median([timed(pull)[0] for _ in range(calls)])
        fetch_s = median([timed(fetch)[0] for _ in range(calls)])
    target = value_at_most(0.050, "<= 50 ms")
    notes = f"median of {calls}; baseline: hf_hub_download(local_files_only=True) on its own cache"
    if hf_hit is None:
        notes += f"; baseline failed: {why}"
    return [
        compare("cache hit: zoo.pull(name)", pull_s, base, ms, target, notes + "; includes name resolution"),
        compare("cache hit: download.fetch(entry)", fetch_s, base, ms, target, notes),
        Row("cache hit: sha256 objects made", str(made[0]), "—", "—", "0 (no re-hash)",
            "yes" if made[0] == 0 else "no", f"during {2 * calls} hits (hashlib.sha256/new wrapped)"),
    ]


def _checked_fetch(download: Any, entry: Any) -> Any:
    result = download.fetch(entry, entry.file, progress=False)
    if result.source != "cache" or result.downloaded:
        raise RuntimeError(f"expected a cache hit, got source {result.source!r}")
    return result


def _hf_hit(cache_dir: Path, model: Path, sha256: str) -> Callable[[], Any]:
    """Seed a Hugging Face cache with `model` (one real download); return an offline lookup of it."""
    from huggingface_hub import hf_hub_download

    filename = f"{MODEL_ID}.onnx"
    with FileServer() as server:
        server.add_hub_file(REPO_ID, filename, model, sha256)
        hf_hub_download(REPO_ID, filename, cache_dir=cache_dir, endpoint=server.url)
    return lambda: hf_hub_download(REPO_ID, filename, cache_dir=cache_dir, local_files_only=True)


@contextmanager
def counting_sha256() -> Iterator[list[int]]:
    """Count sha256 objects made inside the block (hashlib.sha256 and hashlib.new('sha256'))."""
    made = [0]
    real_sha256, real_new = hashlib.sha256, hashlib.new

    def sha256(*args: Any, **kwargs: Any) -> Any:
        made[0] += 1
        return real_sha256(*args, **kwargs)

    def new(name: str, *args: Any, **kwargs: Any) -> Any:
        made[0] += name.lower() == "sha256"
        return real_new(name, *args, **kwargs)

    hashlib.sha256, hashlib.new = sha256, new
    try:
        yield made
    finally:
        hashlib.sha256, hashlib.new = real_sha256, real_new

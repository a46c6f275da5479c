"""The compiled index cache answers exactly as the full index, and follows every manifest change."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from zoo.errors import OpsetError, UnknownModelError
from zoo.index.catalog import load_index, normalize
from zoo.store import index_cache


def all_names() -> list[tuple[str, int | None]]:
    names: list[tuple[str, int | None]] = []
    for e in load_index().entries:
        names += [(e.id, None), (e.id.upper(), e.opset), (e.hub_name, None), (e.hub_name, e.opset)]
        names += [(a, None) for a in e.aliases]
    return names


def test_every_name_resolves_as_the_full_index_does() -> None:
    full = load_index()
    for name, opset in all_names():
        fast, slow = index_cache.resolve(name, opset), full.resolve(name, opset)
        assert (fast.entry, fast.how, fast.candidates, fast.note) == (slow.entry, slow.how, slow.candidates,
                                                                      slow.note), name
    assert len(list((Path(os.environ["ZOO_HOME"]) / "index").glob("*.sqlite"))) == 1


def test_errors_are_the_full_indexes_errors() -> None:
    with pytest.raises(UnknownModelError) as unknown:
        index_cache.resolve("resnett50")
    assert "resnet50" in unknown.value.suggestions
    with pytest.raises(OpsetError):
        index_cache.resolve("alexnet", 5)
    with pytest.raises(OpsetError):
        index_cache.resolve("vgg19-7", 12)


def test_by_sha256() -> None:
    entry = load_index().resolve("mnist-8").entry
    assert index_cache.by_sha256(entry.sha256) == entry
    assert index_cache.by_sha256("0" * 64) is None


def user_manifest(path: Path, ids: list[str]) -> Path:
    base = load_index().resolve("mnist-8").entry.to_dict()
    models = [{**{k: base[k] for k in ("task", "opset", "inputs", "outputs", "license")},
               "id": i, "hub_name": f"acme {i}", "aliases": [],
               "file": {"path": f"private/{i}.onnx", "sha256": f"{n:064x}", "size": 10 + n}}
              for n, i in enumerate(ids, 1)]
    path.write_text(json.dumps({"schema_version": 1, "family": "acme", "models": models}))
    return path


def test_a_changed_manifest_is_seen_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = user_manifest(tmp_path / "acme.json", ["acme-a-1"])
    monkeypatch.setenv("ZOO_MANIFESTS", str(manifest))
    assert index_cache.resolve("acme-a-1").entry.id == "acme-a-1"
    with pytest.raises(UnknownModelError):
        index_cache.resolve("acme-b-1")
    user_manifest(manifest, ["acme-a-1", "acme-b-1"])
    os.utime(manifest, ns=(time.time_ns(), time.time_ns() + 1_000_000))  # same second, other mtime
    assert index_cache.resolve("acme-b-1").entry.hub_name == "acme acme-b-1"
    assert index_cache.resolve("ACME acme-b-1").how == "hub_name"
    assert normalize("ACME acme-b-1") == "acmeacme-b-1"


def test_an_unwritable_index_folder_falls_back_to_the_full_index() -> None:
    home = Path(os.environ["ZOO_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    (home / "index").write_text("a file where the folder should be: nothing can be written there")
    resolution = index_cache.resolve("vgg 19")
    assert (resolution.entry.id, resolution.how) == (load_index().resolve("vgg 19").entry.id, "alias")
    assert (home / "index").is_file()

"""Hostile `zoo mirror export`: manifest paths and folders in DIR that must not break the mirror.

A mirror path comes from a (user) manifest, and DIR may hold anything. The whole export is planned
first; a path that would replace zoo-mirror.json, paths that collide, and links or files in the way are
refused (exit 2) before one byte is written, so an earlier export stays served exactly as it was, and
nothing is ever written outside DIR. Models are synthetic, seeded with `zoo cache import`.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from reliability_helpers import assert_cache_clean, assert_clear_error, synthetic, write_manifest, zoo

from zoo.store import mirror

A = synthetic("mirror-a-1", 3000, seed=71)
B = synthetic("mirror-b-1", 4000, seed=72)


def entry(model: Any, path: str, model_id: str | None = None) -> dict[str, Any]:
    return {**model.manifest_entry(), "id": model_id or model.model_id,
            "file": {"path": path, "sha256": hashlib.sha256(model.data).hexdigest(), "size": len(model.data)}}


def seed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *models: tuple[Any, str]) -> None:
    """A user manifest with each (model, mirror path), and every file imported into the cache."""
    entries = [entry(m, p, f"{m.model_id}-{i}" if i else None) for i, (m, p) in enumerate(models)]
    monkeypatch.setenv("ZOO_MANIFESTS", str(write_manifest(tmp_path / "manifests", entries)))
    for e, (m, _) in zip(entries, models):
        local = tmp_path / "downloads" / f"{e['id']}.onnx"
        local.parent.mkdir(exist_ok=True)
        local.write_bytes(m.data)
        result = zoo("cache", "import", str(local), "--id", e["id"])
        assert result.exit_code == 0, result.stderr


def tree(root: Path) -> dict[str, bytes | str]:
    """Every entry under root: file bytes, or where a link points."""
    return {str(p.relative_to(root)): os.readlink(p) if p.is_symlink() else p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_symlink() or p.is_file()}


def served(dest: Path) -> None:
    """Every record of the index names a file under DIR with exactly its sha256 and size."""
    index = json.loads((dest / mirror.INDEX_NAME).read_text())
    for record in index["files"]:
        data = (dest / record["path"]).read_bytes()
        assert (hashlib.sha256(data).hexdigest(), len(data)) == (record["sha256"], record["bytes"]), record


# -- paths that would replace the index ---------------------------------------------------------------


@pytest.mark.parametrize("path", ["zoo-mirror.json", "ZOO-MIRROR.JSON", "zoo-mirror.json/a.onnx",
                                  ".zoo-mirror.json.0123.tmp", "zoo-manifest.json"])
def test_a_model_path_cannot_replace_the_index(path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               isolated_env: Path) -> None:
    dest = tmp_path / "mirror"
    seed(tmp_path, monkeypatch, (B, "private/b.onnx"), (A, path))
    for _ in range(2):  # the second run is where an unchanged index used to be overwritten
        result = zoo("mirror", "export", str(dest))
        assert_clear_error(result, 2, f"its model path {path!r} would take the place of the mirror's own zoo-m")
    assert not dest.exists()
    result = zoo("mirror", "export", str(dest), "mirror-b-1")  # the good model alone still exports
    assert result.exit_code == 0, result.stderr
    served(dest)
    assert assert_cache_clean(isolated_env) == 2


# -- collisions between paths ----------------------------------------------------------------------------


@pytest.mark.parametrize(("first", "second", "words"), [
    pytest.param("p/a.onnx", "p/a.onnx/b.onnx", "is a file, but p/a.onnx/b.onnx", id="file-vs-folder"),
    pytest.param("p/a.onnx/b.onnx", "p/a.onnx", "is a file, but p/a.onnx/b.onnx", id="folder-vs-file"),
    pytest.param("p/Model.onnx", "p/model.onnx", "differ only in case", id="case"),
    pytest.param("P/a.onnx", "p/a.onnx/x", "is a file, but", id="case-and-folder"),
    pytest.param("p/same.onnx", "p/same.onnx", "other bytes at the same path p/same.onnx", id="same-path"),
])
def test_colliding_paths_are_refused_before_writing(first: str, second: str, words: str, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    dest = tmp_path / "mirror"
    seed(tmp_path, monkeypatch, (A, first), (B, second))
    result = zoo("mirror", "export", str(dest))
    assert_clear_error(result, 2, words)
    assert not dest.exists()  # nothing at all was written: no half export, no index


def test_a_collision_with_an_earlier_export_leaves_it_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dest = tmp_path / "mirror"
    seed(tmp_path, monkeypatch, (A, "p/a.onnx"), (B, "p/a.onnx/b.onnx"))
    assert zoo("mirror", "export", str(dest), "mirror-a-1").exit_code == 0
    before = tree(dest)
    result = zoo("mirror", "export", str(dest), "mirror-b-1-1")
    assert_clear_error(result, 2, f"cannot export to {dest}, nothing was written", "p/a.onnx (mirror-a-1) is a file")
    assert tree(dest) == before
    served(dest)


# -- what is in the way inside DIR -------------------------------------------------------------------------


def test_a_symlinked_folder_never_makes_it_write_outside(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dest, outside = tmp_path / "mirror", tmp_path / "outside"
    outside.mkdir()
    dest.mkdir()
    (dest / "private").symlink_to(outside)
    seed(tmp_path, monkeypatch, (A, "private/a.onnx"))
    for args in (["--dry-run"], []):
        result = zoo("mirror", "export", str(dest), *args)
        assert_clear_error(result, 2, f"{dest / 'private'} is a symbolic link (to {outside})", "never through a link")
    assert list(outside.iterdir()) == [] and tree(dest) == {"private": str(outside)}


def test_a_link_inside_dir_is_refused_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """DIR/b -> DIR/a would make two mirror paths one file: last writer wins, the index lies."""
    dest = tmp_path / "mirror"
    (dest / "a").mkdir(parents=True)
    (dest / "b").symlink_to(dest / "a")
    seed(tmp_path, monkeypatch, (A, "a/m.onnx"), (B, "b/m.onnx"))
    result = zoo("mirror", "export", str(dest))
    assert_clear_error(result, 2, f"{dest / 'b'} is a symbolic link")
    assert list((dest / "a").iterdir()) == []


@pytest.mark.parametrize(("make", "words"), [
    pytest.param(lambda d: (d / "private").write_bytes(b"notes"), "private is a file, but private/a.onnx",
                 id="file-where-folder"),
    pytest.param(lambda d: (d / "private" / "a.onnx").mkdir(parents=True), "is a folder where the file",
                 id="folder-where-file"),
    pytest.param(lambda d: (d / mirror.INDEX_NAME).mkdir(parents=True), f"{mirror.INDEX_NAME} is a folder",
                 id="folder-where-index"),
])
def test_things_in_the_way_are_refused_and_left_alone(make: Any, words: str, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    dest = tmp_path / "mirror"
    dest.mkdir()
    make(dest)
    before = tree(dest)
    seed(tmp_path, monkeypatch, (A, "private/a.onnx"))
    result = zoo("mirror", "export", str(dest))
    assert_clear_error(result, 2, words, "nothing was written")
    assert tree(dest) == before


def test_a_folder_swapped_for_a_link_after_planning_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dest, outside = tmp_path / "mirror", tmp_path / "outside"
    outside.mkdir()
    seed(tmp_path, monkeypatch, (A, "private/a.onnx"))
    plan = mirror.plan(dest, ["mirror-a-1"])
    dest.mkdir()
    (dest / "private").symlink_to(outside)  # between the plan and its execution
    with pytest.raises(mirror.ZooError, match="it changed after the export was planned"):
        plan.execute()
    assert list(outside.iterdir()) == []


def test_an_index_with_hostile_records_is_ignored_not_followed(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    dest = tmp_path / "mirror"
    dest.mkdir()
    bad = {"format": 1, "zoo_version": "0", "files": [
        {"id": "x", "kind": "model", "path": "../escape.onnx", "sha256": "ab" * 32, "bytes": 1}]}
    (dest / mirror.INDEX_NAME).write_text(json.dumps(bad))
    seed(tmp_path, monkeypatch, (A, "private/a.onnx"))
    result = zoo("mirror", "export", str(dest))
    assert result.exit_code == 0, result.stderr
    assert "ignored" in result.stderr and "not a relative path inside the mirror" in result.stderr
    assert [r["path"] for r in json.loads((dest / mirror.INDEX_NAME).read_text())["files"]] == ["private/a.onnx"]
    served(dest)


def test_a_failure_mid_export_never_leaves_the_index_listing_other_bytes(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Export A1 at x/a and B at x/b; then x/a gets new bytes (A2) and B's copy fails: the index must not
    still promise A1's sha256 for x/a, whose bytes are A2's now."""
    dest = tmp_path / "mirror"
    a2 = synthetic("mirror-a-2", 3500, seed=73)
    seed(tmp_path, monkeypatch, (A, "x/a.onnx"), (B, "x/b.onnx"))
    assert zoo("mirror", "export", str(dest)).exit_code == 0
    seed(tmp_path / "v2", monkeypatch, (a2, "x/a.onnx"), (B, "x/b.onnx"))
    (dest / "x" / "b.onnx").unlink()
    blob = Path(os.environ["ZOO_HOME"]) / "blobs" / "sha256" / hashlib.sha256(B.data).hexdigest()
    blob.chmod(0o644)
    blob.write_bytes(b"\0" * len(B.data))  # bit rot: the verified copy of B fails
    monkeypatch.setattr(os, "link", lambda *a, **k: (_ for _ in ()).throw(OSError(errno.EXDEV, "cross-device")))
    result = zoo("mirror", "export", str(dest))
    assert result.exit_code == 3 and "is damaged" in result.stderr, result.stderr
    assert (dest / "x" / "a.onnx").read_bytes() == a2.data  # the first step did happen
    served(dest)  # and the index does not vouch for anything that changed

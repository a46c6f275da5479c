"""`zoo mirror export`: the zoo-repo layout from a real cache, served by a real static server, pulled elsewhere.

Caches are seeded the way users seed them (download.import_file) with real zoo files from
../shared/data/models and synthetic models from a user manifest (ZOO_MANIFESTS).
"""

from __future__ import annotations

import errno
import functools
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import DATA, need, tar_gz
from conftest import sha256_hex as sha256
from test_imports import HEAVY
from test_manifest import broken, write_manifest

import zoo
from zoo.cli import cli
from zoo.cli.mirror import mirror
from zoo.index.catalog import load_index
from zoo.store import download
from zoo.store.mirror import INDEX_NAME, DiskFile, MirrorFile, MirrorState, Selection, plan_export

REAL = ("mnist-8", "mobilenetv2-12-int8")


@dataclass(frozen=True)
class Cache:
    home: Path
    data: dict[str, bytes]  # zoo path -> bytes, for every file seeded

    def blob(self, path: str) -> Path:
        return self.home / "blobs" / "sha256" / sha256(self.data[path])


def _synthetic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    """acme-net-1 (with a test-data archive) and beta-net-2 in a user manifest; returns {zoo path: bytes}."""
    acme, beta = os.urandom(5000), os.urandom(7000)
    archive = tar_gz({"test_data_set_0/input_0.pb": os.urandom(64)})
    a = broken("id", "acme-net-1")
    a["file"] = {"path": "private/acme/acme-net-1.onnx", "sha256": sha256(acme), "size": len(acme)}
    a["test_data"] = {"path": "private/acme/acme-net-1.tar.gz", "sha256": sha256(archive), "size": len(archive)}
    b = broken("id", "beta-net-2")
    b["aliases"] = ["beta"]
    b["file"] = {"path": "private/beta/beta-net-2.onnx", "sha256": sha256(beta), "size": len(beta)}
    (tmp_path / "manifests").mkdir()
    write_manifest(tmp_path / "manifests", [a, b])
    monkeypatch.setenv("ZOO_MANIFESTS", str(tmp_path / "manifests"))
    return {a["file"]["path"]: acme, a["test_data"]["path"]: archive, b["file"]["path"]: beta}


def _seed(home: Path, tmp_path: Path, data: dict[str, bytes]) -> None:
    by_path = {f.path: (e, f) for e in load_index().entries for f in (e.file, e.test_data) if f is not None}
    (tmp_path / "downloads").mkdir(exist_ok=True)
    for path, content in data.items():
        local = tmp_path / "downloads" / path.rsplit("/", 1)[-1]
        local.write_bytes(content)
        entry, file = by_path[path]
        download.import_file(entry, file, local, home)


@pytest.fixture
def synthetic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_env: Path) -> Cache:
    data = _synthetic(tmp_path, monkeypatch)
    _seed(isolated_env, tmp_path, data)
    return Cache(isolated_env, data)


@pytest.fixture
def seeded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_env: Path) -> Cache:
    """The synthetic models plus mnist-8 and mobilenetv2-12-int8 from ../shared."""
    data = _synthetic(tmp_path, monkeypatch)
    for model_id in REAL:
        entry = load_index().resolve(model_id).entry
        data[entry.file.path] = need(DATA / "models" / entry.file.name).read_bytes()
    _seed(isolated_env, tmp_path, data)
    return Cache(isolated_env, data)


def export(*args: str, code: int = 0) -> Any:
    result = CliRunner().invoke(mirror, ["export", *args], catch_exceptions=False)
    assert result.exit_code == code, (result.stdout, result.stderr)
    return result


def export_json(*args: str) -> dict[str, Any]:
    return json.loads(export(*args, "--json").stdout)


def tree(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every file under root with inode, size and mtime: equal before and after means nothing was written."""
    return {str(p.relative_to(root)): (p.lstat().st_ino, p.lstat().st_size, p.lstat().st_mtime_ns)
            for p in sorted(root.rglob("*"))}


@contextmanager
def static_server(directory: Path) -> Iterator[tuple[str, list[tuple[str, int]]]]:
    """Python's own static file server on loopback, port 0; yields its URL and the (path, status) it answered."""
    seen: list[tuple[str, int]] = []

    class Handler(SimpleHTTPRequestHandler):
        def log_request(self, code: Any = "-", size: Any = "-") -> None:
            seen.append((self.path, int(code)))

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(directory)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


# -- export ---------------------------------------------------------------------------------------------


def test_export_writes_the_zoo_layout_as_hard_links_with_an_index(seeded: Cache, tmp_path: Path) -> None:
    dest = tmp_path / "mirror"
    result = export_json(str(dest))
    models = {p: d for p, d in seeded.data.items() if not p.endswith(".tar.gz")}  # no --with-test-data
    assert sorted(f["path"] for f in result["files"]) == sorted(models)
    assert {f["action"] for f in result["files"]} == {"hardlink"} and result["index_written"]
    for path, data in models.items():
        served = dest / path
        assert not served.is_symlink() and served.read_bytes() == data
        assert served.stat().st_ino == seeded.blob(path).stat().st_ino  # same filesystem: a hard link
    index = json.loads((dest / INDEX_NAME).read_text())
    assert index["format"] == 1 and index["zoo_version"] == zoo.__version__
    assert datetime.fromisoformat(index["updated"]).tzinfo is not None
    ids = {f["path"]: f["id"] for f in result["files"]}
    assert index["files"] == [{"id": ids[p], "kind": "model", "path": p, "sha256": sha256(models[p]),
                               "bytes": len(models[p])} for p in sorted(models)]
    assert sorted(p.name for p in dest.rglob("*") if p.name.startswith(".")) == []  # no temp files left


def test_exported_mirror_serves_a_fresh_pull(seeded: Cache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dest = tmp_path / "mirror"
    result = export("--with-test-data", str(dest))
    assert "test data not cached for mnist-8, mobilenetv2-12-int8" in result.stderr  # only acme has an archive
    fresh = tmp_path / "fresh-home"
    monkeypatch.setenv("ZOO_HOME", str(fresh))
    monkeypatch.setenv("ZOO_RETRIES", "1")
    with static_server(dest) as (url, seen):
        monkeypatch.setenv("ZOO_MIRROR", url)
        pulled = CliRunner().invoke(cli, ["pull", "--quiet", "--json", *REAL, "beta"], catch_exceptions=False)
        assert pulled.exit_code == 0, pulled.stderr
        with_data = CliRunner().invoke(cli, ["pull", "--quiet", "--json", "--with-test-data", "acme-net-1"],
                                       catch_exceptions=False)
        assert with_data.exit_code == 0, with_data.stderr
    results = json.loads(pulled.stdout) + json.loads(with_data.stdout)
    assert [r["id"] for r in results] == [*REAL, "beta-net-2", "acme-net-1"]
    for r in results:
        file = load_index().resolve(r["id"]).entry.file
        assert r["downloaded"] and r["source"] == f"{url}/{file.path}"
        assert Path(r["path"]).is_relative_to(fresh)
        assert sha256(Path(r["path"]).read_bytes()) == file.sha256 == r["sha256"]
    archive = load_index().resolve("acme-net-1").entry.test_data
    assert sha256((fresh / "blobs" / "sha256" / archive.sha256).read_bytes()) == archive.sha256
    assert Path(results[-1]["test_data"], "test_data_set_0", "input_0.pb").is_file()
    assert sorted(seen) == sorted((f"/{path}", 200) for path in seeded.data)  # one GET per file, all served


def test_second_export_writes_nothing(seeded: Cache, tmp_path: Path) -> None:
    dest = tmp_path / "mirror"
    export(str(dest), "--with-test-data")
    before = tree(dest)
    again = export_json(str(dest), "--with-test-data")
    assert {f["action"] for f in again["files"]} == {"kept"} and not again["index_written"]
    assert tree(dest) == before


def test_copies_verified_bytes_when_links_fail(synthetic: Cache, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    def no_links(src: Any, dst: Any, **kwargs: Any) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_links)
    dest = tmp_path / "mirror"
    result = export_json(str(dest), "acme", "beta", "--with-test-data")
    assert [(f["id"], f["kind"], f["action"]) for f in result["files"]] == [
        ("acme-net-1", "model", "copy"), ("acme-net-1", "test-data", "copy"), ("beta-net-2", "model", "copy")]
    assert result["bytes_copied"] == sum(len(d) for d in synthetic.data.values())
    for path, data in synthetic.data.items():
        assert (dest / path).read_bytes() == data
        assert (dest / path).stat().st_ino != synthetic.blob(path).stat().st_ino
    assert {f["action"] for f in export_json(str(dest), "--with-test-data")["files"]} == {"kept"}  # recorded


def test_a_damaged_blob_is_not_copied(synthetic: Cache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "link", lambda *a, **k: (_ for _ in ()).throw(OSError(errno.EXDEV, "cross-device")))
    path = "private/beta/beta-net-2.onnx"
    blob = synthetic.blob(path)
    blob.chmod(0o644)
    with open(blob, "r+b") as f:  # same size, different bytes: bit rot the scan cannot see
        f.write(b"\0" * 16)
    result = export(str(tmp_path / "mirror"), "beta", code=3)
    assert "is damaged" in result.stderr and f"expected sha256 {sha256(synthetic.data[path])}" in result.stderr
    assert "zoo cache verify beta-net-2" in result.stderr
    assert not (tmp_path / "mirror" / path).exists()


@pytest.mark.parametrize(("names", "needle"), [
    (["mnist-12"], "run `zoo pull mnist-12` first"),
    (["acme", "mnist-12", "mnist-7"], "run `zoo pull mnist-12 mnist-7` first"),
    (["no-such-model"], "unknown model 'no-such-model'"),
])
def test_a_name_that_is_not_cached_exits_2(synthetic: Cache, tmp_path: Path, names: list[str], needle: str) -> None:
    result = export(str(tmp_path / "mirror"), *names, code=2)
    assert needle in result.stderr and "hint:" in result.stderr
    assert not (tmp_path / "mirror").exists()


def test_named_model_without_its_cached_test_data_exits_2(synthetic: Cache, tmp_path: Path) -> None:
    synthetic.blob("private/acme/acme-net-1.tar.gz").unlink()
    result = export(str(tmp_path / "mirror"), "acme", "beta", "--with-test-data", code=2)
    assert "not cached (model file and test data), so not exported: acme-net-1\n" in result.stderr
    assert "run `zoo pull acme-net-1 --with-test-data` first" in result.stderr
    everything = export_json(str(tmp_path / "mirror"), "--with-test-data")  # all cached models: only a note
    assert [(f["id"], f["kind"]) for f in everything["files"]] == [("acme-net-1", "model"), ("beta-net-2", "model")]


def test_subset_export_keeps_earlier_files_listed(synthetic: Cache, tmp_path: Path) -> None:
    dest = tmp_path / "mirror"
    export(str(dest))
    result = export_json(str(dest), "beta")
    assert [f["id"] for f in result["files"]] == ["beta-net-2"]
    assert [f["id"] for f in result["carried"]] == ["acme-net-1"] and not result["index_written"]
    (dest / "private/acme/acme-net-1.onnx").unlink()  # someone removed it by hand
    again = export(str(dest), "beta", "--json")
    assert "no longer in" in again.stderr and json.loads(again.stdout)["index_written"]
    assert [f["id"] for f in json.loads((dest / INDEX_NAME).read_text())["files"]] == ["beta-net-2"]


def test_files_in_the_way_are_replaced_by_real_files(synthetic: Cache, tmp_path: Path) -> None:
    dest = tmp_path / "mirror"
    wrong, linked = dest / "private/acme/acme-net-1.onnx", dest / "private/beta/beta-net-2.onnx"
    wrong.parent.mkdir(parents=True)
    wrong.write_bytes(b"x" * 5000)  # right size, not recorded: not trusted
    linked.parent.mkdir(parents=True)
    linked.symlink_to(synthetic.blob("private/beta/beta-net-2.onnx"))  # a server may not follow it
    result = export_json(str(dest))
    assert {f["action"] for f in result["files"]} == {"hardlink"}
    assert wrong.read_bytes() == synthetic.data["private/acme/acme-net-1.onnx"]
    assert not linked.is_symlink() and linked.read_bytes() == synthetic.data["private/beta/beta-net-2.onnx"]


def test_dry_run_writes_nothing(synthetic: Cache, tmp_path: Path) -> None:
    result = export(str(tmp_path / "mirror"), "--dry-run")
    assert [line.split()[:2] for line in result.stdout.splitlines()[2:]] == [["write", "acme-net-1"],
                                                                             ["write", "beta-net-2"]]
    assert "dry run: nothing was written (2 of 2" in result.stderr
    assert not (tmp_path / "mirror").exists()


def test_refuses_to_export_into_the_cache(synthetic: Cache) -> None:
    result = export(str(synthetic.home / "mirror"), code=2)
    assert "into the cache itself" in result.stderr


def test_empty_cache_exports_nothing(tmp_path: Path) -> None:
    result = export(str(tmp_path / "mirror"))
    assert "nothing to export" in result.stderr and not (tmp_path / "mirror").exists()


# -- the pure plan --------------------------------------------------------------------------------------

FILE = MirrorFile("acme-net-1", "model", "private/acme-net-1.onnx", "ab" * 32, 100)
BLOB = Path("/cache/blobs/sha256/" + "ab" * 32)


@pytest.mark.parametrize(("on_disk", "recorded", "action"), [
    (None, None, "write"),  # new
    (DiskFile(FILE.path, 100, 1, 7), None, "keep"),  # the blob itself (same inode)
    (DiskFile(FILE.path, 100, 1, 8), FILE, "keep"),  # recorded with this sha256 and size
    (DiskFile(FILE.path, 100, 1, 8), None, "write"),  # there, but not recorded: not trusted
    (DiskFile(FILE.path, 99, 1, 8), FILE, "write"),  # recorded, but its size changed
    (DiskFile(FILE.path, 100, 1, 8), MirrorFile("x", "model", FILE.path, "cd" * 32, 100), "write"),  # other bytes
])
def test_plan_decides_from_facts_alone(on_disk: DiskFile | None, recorded: MirrorFile | None, action: str) -> None:
    state = MirrorState(True, "0.1.0", (recorded,) if recorded else (), (on_disk,) if on_disk else (),
                        (DiskFile(str(BLOB), 100, 1, 7),))
    plan = plan_export(Path("/srv/zoo"), Selection(((FILE, BLOB),)), state, zoo_version="0.1.0")
    assert [s.action for s in plan.steps] == [action]
    assert plan.index_changed == (recorded != FILE)


def test_importing_the_cli_group_is_light() -> None:
    code = ("import json, sys\nfrom zoo.cli.mirror import mirror\n"
            "try:\n    mirror(['export', '--help'])\nexcept SystemExit:\n    pass\n"
            f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]), file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stderr.strip().splitlines()[-1]) == [] and "http.server" in proc.stdout

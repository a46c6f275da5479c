"""Reuse of the Hugging Face hub cache: a real cache built by huggingface_hub from the fake hub, then adopted.

huggingface_hub.hf_hub_download fills a real hub cache (refs/, snapshots/ symlinks, blobs/) from
tests/servers.py's FakeHubServer; zoo must then find and adopt those files without a request.
"""

from __future__ import annotations

import errno
import hashlib
import inspect
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
from click.testing import CliRunner
from conftest import DATA
from servers import FakeHubServer
from test_manifest import broken, write_manifest

from zoo.index.catalog import load_index
from zoo.index.manifest import FileEntry, ModelEntry
from zoo.store import download, hf_cache

MNIST = "mnist-8"
LEGACY = "onnxmodelzoo/legacy_models"
HOOKED = "hf_cache" in inspect.getsource(download.fetch)
_SHA256 = hashlib.sha256  # the real one: the `hashed` fixture replaces hashlib.sha256 to count reads


def sha256(data: bytes) -> str:
    return _SHA256(data).hexdigest()


@dataclass(frozen=True)
class Hub:
    server: FakeHubServer
    cache_dir: Path  # the hub cache huggingface_hub filled
    data: dict[str, bytes]  # model id -> bytes

    def entry(self, model_id: str) -> tuple[ModelEntry, FileEntry]:
        entry = load_index().resolve(model_id).entry
        return entry, entry.file

    def blob(self, model_id: str, repo_id: str) -> Path:
        return self.cache_dir / f"models--{repo_id.replace('/', '--')}" / "blobs" / sha256(self.data[model_id])

    def snapshot(self, repo_id: str, filename: str) -> Path:
        return (self.cache_dir / f"models--{repo_id.replace('/', '--')}" / "snapshots" / FakeHubServer.COMMIT
                / filename)


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_env: Path) -> Iterator[Hub]:
    """A hub cache: acme-hf-1 in legacy_models and in onnxmodelzoo/acme-hf-1; mnist-8 too when ../shared has it."""
    acme = os.urandom(6000)
    model = broken("id", "acme-hf-1")
    model["file"] = {"path": "private/acme/acme-hf-1.onnx", "sha256": sha256(acme), "size": len(acme)}
    (tmp_path / "manifests").mkdir()
    write_manifest(tmp_path / "manifests", [model])
    monkeypatch.setenv("ZOO_MANIFESTS", str(tmp_path / "manifests"))
    data = {"acme-hf-1": acme}
    repos = {LEGACY: {model["file"]["path"]: acme}, "onnxmodelzoo/acme-hf-1": {"acme-hf-1.onnx": acme}}
    mnist = DATA / "models" / "mnist-8.onnx"
    if mnist.is_file():
        data[MNIST] = mnist.read_bytes()
        repos[LEGACY][load_index().resolve(MNIST).entry.file.path] = data[MNIST]
    cache_dir = tmp_path / "hf-home" / "hub"  # HF_HOME/hub: where zoo looks, given conftest's HF_HOME
    # cdn_host="localhost": huggingface_hub reads the file's metadata from the redirect only when it leaves the host.
    with FakeHubServer(repos, cdn_host="localhost") as server:
        from huggingface_hub import hf_hub_download

        for repo_id, files in repos.items():
            for filename in files:
                # endpoint and cache_dir passed explicitly: huggingface_hub fixed both from the env at import.
                hf_hub_download(repo_id, filename, revision="main", endpoint=server.url, cache_dir=cache_dir,
                                token=False)
        yield Hub(server, cache_dir, data)


def need_mnist(hub: Hub) -> None:
    if MNIST not in hub.data:
        pytest.skip(f"needs {DATA / 'models' / 'mnist-8.onnx'} (the ../shared data beside the repo), which is absent")


class CountingSha256:
    """Stands in for hashlib.sha256 to count how many hashers were made and how many bytes each read."""

    made: ClassVar[list[CountingSha256]] = []

    def __init__(self, *args: Any) -> None:
        self.inner, self.bytes = _SHA256(*args), 0
        CountingSha256.made.append(self)

    def update(self, data: bytes) -> None:
        self.bytes += len(data)
        self.inner.update(data)

    def hexdigest(self) -> str:
        return self.inner.hexdigest()


@pytest.fixture
def hashed(monkeypatch: pytest.MonkeyPatch) -> list[CountingSha256]:
    CountingSha256.made = []
    monkeypatch.setattr(hashlib, "sha256", CountingSha256)
    return CountingSha256.made


# -- find -----------------------------------------------------------------------------------------------


def test_find_takes_the_blob_named_by_the_sha256(hub: Hub) -> None:
    need_mnist(hub)
    assert hf_cache.find(*hub.entry(MNIST)) == hub.blob(MNIST, LEGACY)
    found = hf_cache.candidates(*hub.entry("acme-hf-1"))
    per_model = "onnxmodelzoo/acme-hf-1"
    assert [(c.repo_id, c.path) for c in found] == [(LEGACY, hub.blob("acme-hf-1", LEGACY)),
                                                     (per_model, hub.blob("acme-hf-1", per_model))]


def test_find_reads_snapshot_files_where_huggingface_hub_could_not_symlink(hub: Hub) -> None:
    entry, file = hub.entry("acme-hf-1")
    for repo_id, filename in ((LEGACY, file.path), ("onnxmodelzoo/acme-hf-1", "acme-hf-1.onnx")):
        snapshot, blob = hub.snapshot(repo_id, filename), hub.blob("acme-hf-1", repo_id)
        snapshot.unlink()
        blob.rename(snapshot)  # the Windows layout without developer mode: real files, no blob of that name
    assert hf_cache.find(entry, file) == hub.snapshot(LEGACY, file.path)
    assert hf_cache.adopt(entry, file, log=lambda m: None) is not None


def test_hub_cache_dir_follows_the_environment_at_call_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "me"))
    assert hf_cache.hub_cache_dir() == tmp_path / "me" / ".cache" / "huggingface" / "hub"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert hf_cache.hub_cache_dir() == tmp_path / "xdg" / "huggingface" / "hub"
    monkeypatch.setenv("HF_HOME", "~/hf")
    assert hf_cache.hub_cache_dir() == tmp_path / "me" / "hf" / "hub"
    monkeypatch.setenv("HUGGINGFACE_HUB_CACHE", str(tmp_path / "legacy"))
    assert hf_cache.hub_cache_dir() == tmp_path / "legacy"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert hf_cache.hub_cache_dir() == tmp_path / "hub"


# -- adopt ----------------------------------------------------------------------------------------------


def test_adopt_hard_links_the_hf_blob_reading_it_once_and_asking_no_server(hub: Hub, isolated_env: Path,
                                                                           hashed: list[CountingSha256]) -> None:
    need_mnist(hub)
    entry, file = hub.entry(MNIST)
    requests_before = len(hub.server.requests)
    messages: list[str] = []
    result = hf_cache.adopt(entry, file, log=messages.append)
    assert result is not None and not result.downloaded and result.source == str(hub.blob(MNIST, LEGACY))
    assert result.path == isolated_env / "models" / MNIST / "mnist-8.onnx" and result.sha256 == file.sha256
    zoo_blob = isolated_env / "blobs" / "sha256" / file.sha256
    assert zoo_blob.stat().st_ino == hub.blob(MNIST, LEGACY).stat().st_ino == result.path.stat().st_ino
    assert [h.bytes for h in hashed] == [file.size]  # one sha256, over the whole file, once
    assert len(hub.server.requests) == requests_before
    assert messages == [(f"{MNIST}: reused {hub.blob(MNIST, LEGACY)} from the Hugging Face cache (hard link); "
                         "nothing downloaded")]
    assert list((isolated_env / "partial").iterdir()) == []
    again = download.fetch(entry, file, offline=True)  # now an ordinary cache hit
    assert again.source == "cache" and len(hub.server.requests) == requests_before


def test_adopt_copies_and_verifies_when_links_fail(hub: Hub, isolated_env: Path, monkeypatch: pytest.MonkeyPatch,
                                                   hashed: list[CountingSha256]) -> None:
    def no_links(src: Any, dst: Any, **kwargs: Any) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_links)
    entry, file = hub.entry("acme-hf-1")
    result = hf_cache.adopt(entry, file, log=lambda m: None)
    assert result is not None and result.path.read_bytes() == hub.data["acme-hf-1"]
    zoo_blob = isolated_env / "blobs" / "sha256" / file.sha256
    assert zoo_blob.stat().st_ino != hub.blob("acme-hf-1", LEGACY).stat().st_ino
    assert [h.bytes for h in hashed] == [file.size]  # hashed while copying: still one read


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_a_tampered_hf_blob_is_refused_and_never_published(hub: Hub, isolated_env: Path, damage: str) -> None:
    entry, file = hub.entry("acme-hf-1")
    good = hub.data["acme-hf-1"]
    bad = good[:100] + bytes([good[100] ^ 0xFF]) + good[101:] if damage == "flip" else good[:-1]
    for repo_id in (LEGACY, "onnxmodelzoo/acme-hf-1"):
        hub.blob("acme-hf-1", repo_id).write_bytes(bad)
    messages: list[str] = []
    requests_before = len(hub.server.requests)
    assert hf_cache.adopt(entry, file, log=messages.append) is None
    got = f"got sha256 {sha256(bad)} ({len(bad)} bytes)" if damage == "flip" else f"got {len(bad)} bytes"
    assert len(messages) == 2 and all(f"expected sha256 {file.sha256} (6000 bytes), {got}" in m for m in messages)
    assert str(hub.blob("acme-hf-1", LEGACY)) in messages[0] and f"hf cache rm model/{LEGACY}" in messages[0]
    assert not (isolated_env / "blobs" / "sha256" / file.sha256).exists()
    assert not (isolated_env / "models" / "acme-hf-1").exists()
    assert list((isolated_env / "partial").iterdir()) == []
    assert all(hub.blob("acme-hf-1", r).stat().st_nlink == 1 for r in (LEGACY, "onnxmodelzoo/acme-hf-1"))
    assert len(hub.server.requests) == requests_before


def test_a_bad_candidate_is_skipped_for_a_good_one(hub: Hub, isolated_env: Path) -> None:
    entry, file = hub.entry("acme-hf-1")
    hub.blob("acme-hf-1", LEGACY).write_bytes(b"\0" * file.size)
    messages: list[str] = []
    result = hf_cache.adopt(entry, file, log=messages.append)
    good = hub.blob("acme-hf-1", "onnxmodelzoo/acme-hf-1")
    assert result is not None and result.source == str(good)
    assert (isolated_env / "blobs" / "sha256" / file.sha256).stat().st_ino == good.stat().st_ino
    assert "ignored" in messages[0] and messages[1].startswith(f"acme-hf-1: reused {good}")


def test_nothing_in_the_hf_cache_leaves_zoo_untouched(isolated_env: Path) -> None:
    entry = load_index().resolve("vgg19-7").entry
    assert hf_cache.find(entry, entry.file) is None
    assert hf_cache.adopt(entry, entry.file) is None
    assert not isolated_env.exists()


def test_zoo_hf_cache_0_turns_reuse_off(hub: Hub, isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZOO_HF_CACHE", "0")
    assert hf_cache.adopt(*hub.entry("acme-hf-1")) is None and not isolated_env.exists()


@pytest.mark.skipif(not HOOKED, reason="needs the hf_cache.adopt hook in zoo.store.download.fetch")
def test_offline_pull_reuses_the_hf_cache(hub: Hub, isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from zoo.cli import cli

    monkeypatch.setenv("ZOO_OFFLINE", "1")
    requests_before = len(hub.server.requests)
    result = CliRunner().invoke(cli, ["pull", "--quiet", "acme-hf-1"], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert Path(result.stdout.strip()).read_bytes() == hub.data["acme-hf-1"]
    assert "from the Hugging Face cache" in result.stderr and len(hub.server.requests) == requests_before

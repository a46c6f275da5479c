"""`zoo pull` end to end (zoo.hub: test_hub.py): real zoo files served by a loopback mirror and fake hub."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import DATA, need, zoo_files
from servers import FakeHubServer, Fault, MirrorServer

from zoo.cli import cli
from zoo.index.catalog import load_index

MNIST = "mnist-8"


@pytest.fixture
def mirror(monkeypatch: pytest.MonkeyPatch):
    with MirrorServer(zoo_files(MNIST, "mnist-12", "mobilenetv2-12-int8")) as server:
        monkeypatch.setenv("ZOO_MIRROR", server.url)
        monkeypatch.setenv("ZOO_RETRY_BACKOFF", "0.01")
        yield server


def pull(*args: str, ok: bool = True):
    result = CliRunner().invoke(cli, ["pull", "--quiet", *args], catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.stderr
    return result


def test_pull_prints_verified_path(mirror: MirrorServer, isolated_env: Path) -> None:
    out = pull(MNIST).stdout.strip()
    path = Path(out)
    assert path.is_absolute() and path == isolated_env / "models" / MNIST / "mnist-8.onnx"
    assert path.read_bytes() == (DATA / "models" / "mnist-8.onnx").read_bytes()
    assert len(mirror.gets()) == 1
    again = pull(MNIST, "--json")
    data = json.loads(again.stdout)
    assert data == [{"id": MNIST, "path": out, "sha256": load_index().resolve(MNIST).entry.sha256,
                     "bytes": 26454, "source": "cache", "downloaded": False}]
    assert len(mirror.gets()) == 1  # the cache hit made no request


def test_pull_several_in_parallel(mirror: MirrorServer) -> None:
    result = pull(MNIST, "mnist-12", "mobilenetv2-int8", "-j", "3", "--json")
    data = json.loads(result.stdout)
    assert [d["id"] for d in data] == [MNIST, "mnist-12", "mobilenetv2-12-int8"]
    assert all(d["downloaded"] and d["source"].startswith(mirror.url) for d in data)
    assert "resolved to mobilenetv2-12-int8" in result.stderr


def test_pull_corrupt_mirror_exits_3_and_keeps_nothing(monkeypatch: pytest.MonkeyPatch, isolated_env: Path) -> None:
    files = zoo_files(MNIST)
    with MirrorServer(files) as server:
        server.inject(next(iter(files)), Fault(corrupt_at=100), forever=True)
        monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
        monkeypatch.setenv("ZOO_RETRIES", "1")
        result = pull(MNIST, "--mirror", server.url, ok=False)
    assert result.exit_code == 3
    entry = load_index().resolve(MNIST).entry
    assert entry.sha256 in result.stderr and "26454" in result.stderr
    assert not (isolated_env / "blobs" / "sha256" / entry.sha256).exists()
    assert not list((isolated_env / "partial").glob("*")) if (isolated_env / "partial").exists() else True
    assert result.stdout == ""


def test_pull_unknown_model_exits_2() -> None:
    result = pull("resnett50", ok=False)
    assert result.exit_code == 2 and "did you mean" in result.stderr


def test_offline_uncached_says_how_to_import(monkeypatch: pytest.MonkeyPatch, mirror: MirrorServer) -> None:
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    result = pull(MNIST, ok=False)
    assert result.exit_code == 2 and "zoo cache import" in result.stderr
    assert mirror.gets() == []


def spawn_pull(url: str, env_home: Path) -> subprocess.Popen:
    env = {**os.environ, "ZOO_HOME": str(env_home), "ZOO_MIRROR": url, "HF_ENDPOINT": "http://127.0.0.1:9",
           "ZOO_RETRY_BACKOFF": "0.01"}
    return subprocess.Popen([sys.executable, "-m", "zoo", "pull", "--quiet", "mobilenetv2-12-int8"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_kill_9_of_zoo_pull_then_resume(isolated_env: Path) -> None:
    files = zoo_files("mobilenetv2-12-int8")
    path = next(iter(files))
    with MirrorServer(files) as server:
        server.inject(path, Fault(stall=30, stall_at=2 * 1024 * 1024))
        proc = spawn_pull(server.url, isolated_env)
        partial_dir = isolated_env / "partial"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            parts = list(partial_dir.glob("*.part")) if partial_dir.exists() else []
            if parts and parts[0].stat().st_size >= 1024 * 1024:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        server.unstall()
        kept = parts[0].stat().st_size
        assert 0 < kept < len(files[path])
        second = spawn_pull(server.url, isolated_env)
        out, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    assert Path(out.strip()).read_bytes() == files[path]
    ranges = [r.range for r in server.gets()]
    assert ranges[0] is None and ranges[-1] == f"bytes={kept}-"


def test_eight_concurrent_zoo_pulls_download_once(isolated_env: Path) -> None:
    files = zoo_files("mobilenetv2-12-int8")
    with MirrorServer(files) as server:
        procs = [spawn_pull(server.url, isolated_env) for _ in range(8)]
        outs = [p.communicate(timeout=120) for p in procs]
        body_gets = [r for r in server.gets() if r.method == "GET"]
    assert [p.returncode for p in procs] == [0] * 8, [e for _, e in outs]
    assert len({o.strip() for o, _ in outs}) == 1
    assert len(body_gets) == 1


def test_pull_via_fake_hub_only(monkeypatch: pytest.MonkeyPatch) -> None:
    entry = load_index().resolve(MNIST).entry
    data = need(DATA / "models" / "mnist-8.onnx").read_bytes()
    with FakeHubServer({"onnxmodelzoo/legacy_models": {entry.file.path: data}}) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        result = json.loads(pull(MNIST, "--json").stdout)[0]
    assert result["source"].startswith(server.url + "/onnxmodelzoo/legacy_models/resolve/main/validated/")
    assert Path(result["path"]).read_bytes() == data

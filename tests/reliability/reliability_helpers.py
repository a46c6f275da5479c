"""Shared pieces of the reliability suite: synthetic models, a mirror that can throttle or reset, zoo runners, checks.

Not a conftest.py on purpose: tests/test_pull.py and others do `from conftest import ...`, and a second
conftest.py here would take that module name over and break their collection. Pytest's prepend import
mode puts this folder on sys.path, so test modules import this file by name; tests/ (with servers.py and
conftest.py) is on sys.path already through tests/conftest.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from servers import PIECE, Fault, MirrorServer

from zoo.cli import cli

MIB = 1024 * 1024


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Model:
    """A synthetic zoo model: random bytes at a zoo path, with an optional test-data archive."""

    model_id: str
    data: bytes
    test_data: bytes | None = None

    @property
    def path(self) -> str:
        return f"private/reliability/{self.model_id}.onnx"

    @property
    def test_data_path(self) -> str:
        return f"private/reliability/{self.model_id}-test-data.tar.gz"

    def files(self) -> dict[str, bytes]:
        """{zoo path: bytes}, what a mirror serves for this model."""
        out = {self.path: self.data}
        if self.test_data is not None:
            out[self.test_data_path] = self.test_data
        return out

    def manifest_entry(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"id": self.model_id, "task": "classification", "opset": 13,
                                 "file": {"path": self.path, "sha256": sha256(self.data), "size": len(self.data)}}
        if self.test_data is not None:
            entry["test_data"] = {"path": self.test_data_path, "sha256": sha256(self.test_data),
                                  "size": len(self.test_data)}
        return entry


def synthetic(model_id: str, size: int, seed: int, test_data: bytes | None = None) -> Model:
    return Model(model_id, random.Random(seed).randbytes(size), test_data)


def write_manifest(folder: Path, entries: list[dict[str, Any]], name: str = "reliability.json") -> Path:
    """A user manifest file (the schema of manifests/README.md) holding `entries`."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(json.dumps({"schema_version": 1, "family": "reliability", "models": entries}))
    return path


def use_models(monkeypatch: pytest.MonkeyPatch, folder: Path, *models: Model) -> Path:
    """Point ZOO_MANIFESTS at a manifest of `models`; pin the retry settings the tests rely on."""
    path = write_manifest(folder, [m.manifest_entry() for m in models])
    monkeypatch.setenv("ZOO_MANIFESTS", str(path))
    monkeypatch.setenv("ZOO_RETRIES", "4")
    monkeypatch.setenv("ZOO_RETRY_BACKOFF", "0.01")
    monkeypatch.setenv("ZOO_TIMEOUT", "5")
    return path


class Mirror(MirrorServer):
    """MirrorServer that can also throttle bodies (`rate`, bytes/s) and reset connections mid-body (`resets`)."""

    def __init__(self, files: dict[str, bytes]) -> None:
        super().__init__(files)
        self.rate: float | None = None
        self.resets: list[int] = []  # the next fault-free bodies: send this many bytes, then a TCP RST

    def _write_body(self, h: Any, data: bytes, fault: Fault) -> None:
        with self._lock:
            reset = self.resets.pop(0) if self.resets and fault == Fault() else None
        try:
            if reset is not None:
                h.wfile.write(data[:reset])
                time.sleep(0.1)  # let the client read what was sent: a RST discards unread bytes
                _reset(h)
            elif self.rate and fault == Fault():
                self._throttled(h, data, self.rate)
            else:
                super()._write_body(h, data, fault)
        except (ConnectionError, TimeoutError):  # the client hung up (a kill -9 or a timeout)
            h.close_connection = True

    @staticmethod
    def _throttled(h: Any, data: bytes, rate: float) -> None:
        start = time.monotonic()
        for at in range(0, len(data), PIECE):
            h.wfile.write(data[at : at + PIECE])
            ahead = (at + PIECE) / rate - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)


def _reset(h: Any) -> None:
    """Abort the connection with a RST (SO_LINGER 0), not a FIN: the client sees 'connection reset'."""
    h.close_connection = True
    h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    h.rfile.close()  # drop makefile's reference, so close() really closes the socket now
    h.connection.close()


def zoo(*args: str, env: dict[str, str] | None = None) -> Result:
    """Run the zoo CLI in this process (stdout and stderr kept apart)."""
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def spawn_zoo(*args: str, env: dict[str, str], **popen: Any) -> subprocess.Popen[str]:
    """Start `python -m zoo ARGS` with os.environ plus `env`; stdout and stderr piped."""
    return subprocess.Popen([sys.executable, "-m", "zoo", *args], env={**os.environ, **env}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)


def assert_clear_error(result: Any, code: int, *words: str) -> None:
    """Exit `code`, an `error:` line on stderr holding every word, and no traceback."""
    stderr = result.stderr
    assert (result.exit_code if isinstance(result, Result) else result.returncode) == code, stderr
    assert "error: " in stderr and "Traceback" not in stderr, stderr
    missing = [w for w in words if w not in stderr]
    assert not missing, f"{missing} not in stderr:\n{stderr}"


def assert_cache_clean(home: Path) -> int:
    """Every blob hashes to its name and `zoo cache verify` exits 0; returns the number of blobs."""
    blobs = sorted((home / "blobs" / "sha256").glob("*"))
    for blob in blobs:  # hashed here first: `zoo cache verify` would delete a bad blob before we saw it
        assert sha256(blob.read_bytes()) == blob.name, f"unverified bytes in the cache: {blob}"
    result = zoo("cache", "verify", env={"ZOO_HOME": str(home)})
    assert result.exit_code == 0, result.stderr
    return len(blobs)


def partial_of(home: Path, model: Model) -> Path:
    return home / "partial" / f"{sha256(model.data)}.part"


def blob_of(home: Path, model: Model) -> Path:
    return home / "blobs" / "sha256" / sha256(model.data)


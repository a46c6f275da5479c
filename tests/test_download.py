"""zoo.store.download and zoo.store.archive against real loopback servers (tests/servers.py); nothing is mocked."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import signal
import subprocess
import sys
import tarfile
import textwrap
import threading
import time
from pathlib import Path

import pytest
from servers import FakeHubServer, Fault, MirrorServer

from zoo.errors import CacheError, DownloadError, HashMismatchError, NotCachedError
from zoo.index.manifest import FileEntry, ModelEntry
from zoo.store import cache, ranges
from zoo.store.archive import safe_extract
from zoo.store.download import MAX_REDIRECTS, decide, fetch, import_file
from zoo.store.sources import Source

SHARED = Path(__file__).resolve().parents[2] / "shared"
MODELS = SHARED / "data" / "models"
MIB = 1024 * 1024
ZOO_PATH = "validated/vision/classification/fake/model/fake-1.onnx"
DATA = random.Random(8).randbytes(2 * MIB + 512 * 1024)  # spans three 1 MiB chunks
TOKEN = "hf_zooTestToken0123456789"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_entry(data: bytes = DATA, path: str = ZOO_PATH, model_id: str = "fake-1") -> ModelEntry:
    raw = {"id": model_id, "task": "image-classification", "opset": 12,
           "file": {"path": path, "sha256": sha256(data), "size": len(data)}}
    return ModelEntry.from_dict(raw, source="tests", family="fake", where="tests")


ENTRY = make_entry()


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "zoo"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    # Nothing listens on port 9: a test that forgets its fake hub fails fast, never reaches the internet.
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    for name in ("ZOO_MIRROR", "ZOO_OFFLINE", "HF_HUB_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "ZOO_RETRIES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ZOO_RETRY_BACKOFF", "0.01")
    monkeypatch.setenv("ZOO_TIMEOUT", "2")


@pytest.fixture
def root() -> Path:
    return Path(os.environ["ZOO_HOME"])


@pytest.fixture
def mirror():
    with MirrorServer({ZOO_PATH: DATA}) as server:
        yield server


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch):
    with FakeHubServer({"onnxmodelzoo/legacy_models": {ZOO_PATH: DATA}}) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


def mirror_source(server: MirrorServer, path: str = ZOO_PATH) -> Source:
    return Source("mirror", f"{server.url}/{path}")


def assert_cached(root: Path, entry: ModelEntry = ENTRY, data: bytes = DATA) -> None:
    blob, view = cache.blob_path(entry.sha256, root), cache.view_path(entry, entry.file, root)
    assert blob.read_bytes() == data
    assert os.path.samefile(blob, view)
    assert not cache.partial_path(entry.sha256, root).exists()
    assert (root / "CACHEDIR.TAG").read_text().startswith("Signature: 8a477f597d28d172789f06886806bc55")


def assert_not_cached(root: Path, entry: ModelEntry = ENTRY) -> None:
    assert not cache.blob_path(entry.sha256, root).exists()
    assert not cache.view_path(entry, entry.file, root).exists()
    assert not cache.partial_path(entry.sha256, root).exists()


def seed_partial(root: Path, prefix: bytes, entry: ModelEntry = ENTRY) -> Path:
    cache.ensure_root(root)
    partial = cache.partial_path(entry.sha256, root)
    partial.write_bytes(prefix)
    return partial


# -- decide: pure, looks at the disk only -------------------------------------------------


@pytest.mark.parametrize(
    ("blob", "partial", "force", "action"),
    [
        (False, None, False, "download"),
        (True, None, False, "hit"),
        (True, None, True, "download"),
        (False, 1000, False, "resume"),
        (False, len(DATA), False, "resume"),
        (False, len(DATA) + 1, False, "download"),
        (False, 1000, True, "download"),
    ],
)
def test_decide(root: Path, blob: bool, partial: int | None, force: bool, action: str) -> None:
    cache.ensure_root(root)
    if blob:
        cache.blob_path(ENTRY.sha256, root).write_bytes(DATA)
    if partial is not None:
        seed_partial(root, b"x" * partial)
    assert decide(ENTRY.file, root, force=force) == action


# -- success paths ------------------------------------------------------------------------


def test_pull_via_mirror(root: Path, mirror: MirrorServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZOO_MIRROR", mirror.url)
    result = fetch(ENTRY, ENTRY.file, progress=False)
    assert result.to_dict() == {
        "id": "fake-1",
        "path": str(root / "models" / "fake-1" / "fake-1.onnx"),
        "sha256": ENTRY.sha256,
        "bytes": len(DATA),
        "source": f"{mirror.url}/{ZOO_PATH}",
        "downloaded": True,
    }
    assert_cached(root)
    assert [(r.path, r.range) for r in mirror.requests] == [(ZOO_PATH, None)]
    assert mirror.requests[0].headers["Accept-Encoding"] == "identity"


def test_pull_real_model_via_mirror(root: Path) -> None:
    index = MODELS / "index.json"
    if not index.is_file():
        pytest.skip(f"needs the real zoo files: {index} is missing")
    facts = json.loads(index.read_text())["mnist-8.onnx"]
    data = (MODELS / "mnist-8.onnx").read_bytes()
    entry = make_entry(data, facts["zoo_model_path"], "mnist-8")
    assert (entry.sha256, entry.size) == (facts["sha256"], facts["bytes"])
    with MirrorServer({facts["zoo_model_path"]: data}) as server:
        result = fetch(entry, entry.file, sources=[mirror_source(server, facts["zoo_model_path"])], progress=False)
    assert result.downloaded and result.sha256 == "2f06e72de813a8635c9bc0397ac447a601bdbfa7df4bebc278723b958831c9bf"
    assert_cached(root, entry, data)


def test_pull_via_fake_hub_legacy_repo(root: Path, hub: FakeHubServer) -> None:
    result = fetch(ENTRY, ENTRY.file, progress=False)
    resolve = f"onnxmodelzoo/legacy_models/resolve/main/{ZOO_PATH}"
    assert result.source == f"{hub.url}/{resolve}"
    assert [r.path for r in hub.gets()] == [resolve, f"cdn/{ENTRY.sha256}"]  # the 302, then one body
    assert_cached(root)


def test_pull_via_fake_hub_per_model_repo_when_legacy_404s(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    messages: list[str] = []
    with FakeHubServer({"onnxmodelzoo/fake-1": {"fake-1.onnx": DATA}}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        result = fetch(ENTRY, ENTRY.file, progress=False, log=messages.append)
    assert result.source == f"{hub.url}/onnxmodelzoo/fake-1/resolve/main/fake-1.onnx"
    assert [r.path for r in hub.gets()] == [  # a 404 is not retried
        f"onnxmodelzoo/legacy_models/resolve/main/{ZOO_PATH}",
        "onnxmodelzoo/fake-1/resolve/main/fake-1.onnx",
        f"cdn/{ENTRY.sha256}",
    ]
    assert "HTTP 404" in messages[0] and "RepoNotFound" in messages[0] and "trying the next source" in messages[0]
    assert_cached(root)


def test_hf_token_goes_to_the_hub_only(root: Path, mirror: MirrorServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    mirror.inject(ZOO_PATH, Fault(status=404))
    # The CDN is another host ("localhost"), as on the real hub: the token must not follow the redirect.
    with FakeHubServer({"onnxmodelzoo/legacy_models": {ZOO_PATH: DATA}}, cdn_host="localhost") as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("ZOO_MIRROR", mirror.url)
        fetch(ENTRY, ENTRY.file, progress=False, log=lambda _: None)
    resolve, cdn = hub.gets()
    assert resolve.headers["Authorization"] == f"Bearer {TOKEN}"
    assert "Authorization" not in cdn.headers
    assert "Authorization" not in mirror.gets()[0].headers
    assert_cached(root)


def test_cache_hit_makes_no_request_and_reads_nothing(
    root: Path, mirror: MirrorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = fetch(ENTRY, ENTRY.file, sources=[mirror_source(mirror)], progress=False)
    first.path.unlink()  # the view is rebuilt from the blob, still without network
    monkeypatch.setattr(hashlib, "sha256", lambda *a: pytest.fail("a cache hit must not hash"))
    again = fetch(ENTRY, ENTRY.file, sources=[mirror_source(mirror)], progress=False)
    assert (again.path, again.downloaded, again.source) == (first.path, False, "cache")
    assert len(mirror.requests) == 1
    assert os.path.samefile(again.path, cache.blob_path(ENTRY.sha256, root))


@pytest.mark.parametrize(("progress", "shown"), [(True, True), (False, False), (None, False)])
def test_progress_bar_only_when_asked_or_on_a_tty(
    mirror: MirrorServer, capsys: pytest.CaptureFixture[str], progress: bool | None, shown: bool
) -> None:
    fetch(ENTRY, ENTRY.file, sources=[mirror_source(mirror)], progress=progress)  # None: stderr is no TTY here
    captured = capsys.readouterr()
    assert captured.out == ""
    assert ("fake-1.onnx" in captured.err and "/2.50M" in captured.err) is shown  # 2.5 MiB: unit_divisor=1024


def test_force_downloads_again(root: Path, mirror: MirrorServer) -> None:
    fetch(ENTRY, ENTRY.file, sources=[mirror_source(mirror)], progress=False)
    result = fetch(ENTRY, ENTRY.file, sources=[mirror_source(mirror)], force=True, progress=False)
    assert result.downloaded and len(mirror.gets()) == 2
    assert_cached(root)


# -- failure modes: one mirror that recovers within its retries ---------------------------


@pytest.mark.parametrize(
    ("faults", "ranges"),
    [
        pytest.param([Fault(drop_after=MIB + MIB // 2)], [None, "resume"], id="drop-mid-file-then-resume"),
        pytest.param([Fault(status=500), Fault(status=500)], [None, None, None], id="500-500-200"),
        pytest.param([Fault(status=429, headers={"Retry-After": "0"})], [None, None], id="429-retry-after"),
        pytest.param([Fault(status=503), Fault(drop_after=MIB + 10)], [None, None, "resume"], id="503-then-drop"),
    ],
)
def test_transient_failures_are_retried(
    root: Path, mirror: MirrorServer, faults: list[Fault], ranges: list[str | None]
) -> None:
    messages: list[str] = []
    mirror.inject(ZOO_PATH, *faults)
    result = fetch(ENTRY, ENTRY.file, sources=[mirror_source(mirror)], progress=False, log=messages.append)
    assert result.downloaded
    assert_cached(root)
    got = [r.range for r in mirror.gets()]
    assert [None if r is None else "resume" for r in got] == ranges
    for asked in filter(None, got):  # resumed at a chunk boundary inside what was received
        start = int(asked.removeprefix("bytes=").removesuffix("-"))
        assert 0 < start <= MIB + MIB // 2
    assert len(messages) == len(faults) and all("retry" in m for m in messages)


def test_retry_after_is_honoured(root: Path, mirror: MirrorServer) -> None:
    mirror.inject(ZOO_PATH, Fault(status=429, headers={"Retry-After": "1"}))
    started = time.monotonic()
    fetch(ENTRY, ENTRY.file, sources=[mirror_source(mirror)], progress=False, log=lambda _: None)
    assert time.monotonic() - started >= 0.9  # the backoff alone would be 0.01 s
    assert len(mirror.gets()) == 2


# -- failure modes: a broken mirror, then the hub -----------------------------------------


@pytest.mark.parametrize(
    ("fault", "env", "mirror_gets", "why"),
    [
        pytest.param(Fault(corrupt_at=12345), {}, 1, "wrong bytes", id="corrupt-byte"),
        pytest.param(Fault(extra=4 * MIB), {}, 1, "wrong bytes", id="body-overrun"),
        pytest.param(Fault(status=404), {}, 1, "HTTP 404", id="not-found"),
        pytest.param(Fault(status=500), {"ZOO_RETRIES": "3"}, 3, "HTTP 500", id="500-forever"),
        pytest.param(Fault(stall=30), {"ZOO_TIMEOUT": "0.5", "ZOO_RETRIES": "2"}, 2, "timed out", id="stall"),
        pytest.param(Fault(redirect_loop=True), {}, MAX_REDIRECTS + 1, "TooManyRedirects", id="redirect-loop"),
    ],
)
def test_broken_mirror_falls_back_to_hub(
    root: Path, mirror: MirrorServer, hub: FakeHubServer, monkeypatch: pytest.MonkeyPatch,
    fault: Fault, env: dict[str, str], mirror_gets: int, why: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ZOO_MIRROR", mirror.url)
    mirror.inject(ZOO_PATH, fault, forever=True)
    messages: list[str] = []
    result = fetch(ENTRY, ENTRY.file, progress=False, log=messages.append)
    assert result.source.startswith(hub.url)
    assert len(mirror.gets()) == mirror_gets
    assert len(hub.gets()) == 2  # resolve + cdn, one body
    failure = [m for m in messages if "failed" in m]
    assert len(failure) == 1 and mirror.url in failure[0] and why in failure[0] and "next source" in failure[0]
    assert_cached(root)


@pytest.mark.parametrize(
    ("fault", "got"),
    [
        pytest.param(Fault(corrupt_at=7), DATA[:7] + bytes([DATA[7] ^ 0xFF]) + DATA[8:], id="corrupt-byte"),
        pytest.param(Fault(extra=4 * MIB), DATA + b"\0" * 4 * MIB, id="body-overrun"),
    ],
)
def test_wrong_bytes_are_rejected_and_nothing_kept(root: Path, mirror: MirrorServer, fault: Fault, got: bytes) -> None:
    mirror.inject(ZOO_PATH, fault, forever=True)
    with pytest.raises(HashMismatchError) as caught:
        fetch(ENTRY, ENTRY.file, sources=[mirror_source(mirror)], progress=False, log=lambda _: None)
    error = caught.value
    assert (error.expected_sha256, error.expected_size) == (ENTRY.sha256, len(DATA))
    if len(got) > len(DATA):  # an overrun stops at its first read past the size, at most one chunk (1 MiB) later
        assert len(DATA) < error.got_size <= len(DATA) + MIB
        got = got[: error.got_size]
    assert (error.got_sha256, error.got_size) == (sha256(got), len(got))
    for fact in (ENTRY.sha256, sha256(got), f"{len(DATA)} bytes", f"{len(got)} bytes", mirror.url, "fake-1", "deleted"):
        assert fact in str(error)
    assert error.exit_code == 3
    assert len(mirror.gets()) == 1  # wrong bytes are not retried from the same source
    assert_not_cached(root)
    assert list((root / "blobs" / "sha256").iterdir()) == []
    assert list((root / "partial").iterdir()) == []


def test_all_sources_failing_lists_each(root: Path, mirror: MirrorServer) -> None:
    sources = [Source("mirror", f"{mirror.url}/a/{ZOO_PATH}"), Source("mirror", f"{mirror.url}/b/{ZOO_PATH}")]
    with pytest.raises(DownloadError) as caught:
        fetch(ENTRY, ENTRY.file, sources=sources, progress=False, log=lambda _: None)
    message = str(caught.value)
    assert not isinstance(caught.value, HashMismatchError) and caught.value.exit_code == 3
    assert f"{sources[0].url}: HTTP 404" in message and f"{sources[1].url}: HTTP 404" in message
    assert "zoo cache import FILE --id fake-1" in message
    assert_not_cached(root)


# -- resume across runs: what a kept partial leads to ------------------------------------

GARBAGE = b"\x00" * 1000


@pytest.mark.parametrize(
    ("prefix", "fault", "ranges"),
    [
        pytest.param(DATA[:1000], None, ["bytes=1000-"], id="resume"),
        pytest.param(GARBAGE, Fault(ignore_range=True), ["bytes=1000-"], id="200-ignores-range-restart"),
        pytest.param(DATA[:1000], Fault(status=416), ["bytes=1000-", None], id="416-restart"),
        pytest.param(DATA[:1000], Fault(bad_range=True), ["bytes=1000-", None], id="wrong-content-range-restart"),
        pytest.param(GARBAGE, None, ["bytes=1000-", None], id="bad-prefix-restart"),
        pytest.param(DATA, None, [], id="complete-partial-no-request"),
        pytest.param(DATA + b"x", None, [None], id="overlong-partial-restart"),
    ],
)
def test_kept_partial(root: Path, mirror: MirrorServer, prefix: bytes, fault: Fault | None, ranges: list) -> None:
    seed_partial(root, prefix)
    if fault:
        mirror.inject(ZOO_PATH, fault)
    result = fetch(ENTRY, ENTRY.file, sources=[mirror_source(mirror)], progress=False, log=lambda _: None)
    assert result.downloaded
    assert [r.range for r in mirror.gets()] == ranges
    assert_cached(root)


def test_drop_then_resume_in_a_later_call(root: Path, mirror: MirrorServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZOO_RETRIES", "1")
    mirror.inject(ZOO_PATH, Fault(drop_after=MIB + MIB // 2))
    with pytest.raises(DownloadError) as caught:
        fetch(ENTRY, ENTRY.file, sources=[mirror_source(mirror)], progress=False, log=lambda _: None)
    partial = cache.partial_path(ENTRY.sha256, root)
    kept = partial.stat().st_size
    assert 0 < kept <= MIB + MIB // 2 and partial.read_bytes() == DATA[:kept]
    assert "run the same command again to resume" in str(caught.value)
    assert not cache.blob_path(ENTRY.sha256, root).exists()
    assert not cache.view_path(ENTRY, ENTRY.file, root).exists()

    fetch(ENTRY, ENTRY.file, sources=[mirror_source(mirror)], progress=False)
    assert [r.range for r in mirror.gets()] == [None, f"bytes={kept}-"]
    assert_cached(root)


# -- processes: kill -9, concurrency, locks -----------------------------------------------

CHILD = textwrap.dedent(
    """
    import json, sys
    from zoo.store.download import fetch
    from zoo.index.manifest import ModelEntry
    from zoo.store.sources import Source
    entry = ModelEntry.from_dict(json.loads(sys.argv[1]), source="tests", family="fake", where="tests")
    connections = int(sys.argv[3]) if len(sys.argv) > 3 else None
    result = fetch(entry, entry.file, sources=[Source("mirror", sys.argv[2])], progress=False,
                   connections=connections)
    print(json.dumps(result.to_dict()))
    """
)


def spawn_fetch(url: str, entry: ModelEntry = ENTRY, connections: int | None = None) -> subprocess.Popen[str]:
    raw = {"id": entry.id, "task": entry.task, "opset": entry.opset,
           "file": {"path": entry.file.path, "sha256": entry.sha256, "size": entry.size}}
    extra = [] if connections is None else [str(connections)]
    return subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(raw), url, *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {condition}")
        time.sleep(0.02)


def test_kill_9_mid_download_then_resume(root: Path, mirror: MirrorServer) -> None:
    mirror.inject(ZOO_PATH, Fault(stall=60, stall_at=MIB + MIB // 2))
    child = spawn_fetch(mirror_source(mirror).url)
    partial = cache.partial_path(ENTRY.sha256, root)
    wait_for(lambda: partial.is_file() and partial.stat().st_size >= MIB)
    child.send_signal(signal.SIGKILL)
    child.communicate()
    assert child.returncode == -signal.SIGKILL
    kept = partial.stat().st_size
    assert partial.read_bytes() == DATA[:kept]
    assert not cache.blob_path(ENTRY.sha256, root).exists()

    result = fetch(ENTRY, ENTRY.file, sources=[mirror_source(mirror)], progress=False)
    assert result.downloaded
    assert [r.range for r in mirror.gets()] == [None, f"bytes={kept}-"]
    assert_cached(root)


def test_concurrent_processes_download_once(root: Path, mirror: MirrorServer) -> None:
    mirror.inject(ZOO_PATH, Fault(stall=60))  # the first body waits until all the others queue on the lock
    children = [spawn_fetch(mirror_source(mirror).url) for _ in range(8)]
    stderr: list[list[str]] = [[] for _ in children]
    readers = [threading.Thread(target=lambda c=c, out=out: [out.append(line) for line in c.stderr], daemon=True)
               for c, out in zip(children, stderr)]
    for reader in readers:
        reader.start()
    waiting = lambda: sum(any("waiting for another zoo process" in s for s in lines) for lines in stderr)  # noqa: E731
    wait_for(lambda: waiting() == 7 and len(mirror.gets()) == 1, 60)
    mirror.unstall()
    results = []
    for child, reader, lines in zip(children, readers, stderr):
        with child:
            assert child.wait(timeout=60) == 0
            reader.join()
            assert not [line for line in lines if "waiting" not in line], lines
            results.append(json.loads(child.stdout.read()))
    assert len(mirror.gets()) == 1
    assert {r["path"] for r in results} == {str(cache.view_path(ENTRY, ENTRY.file, root))}
    assert sorted(r["downloaded"] for r in results) == [False] * 7 + [True]
    assert_cached(root)


LOCKER = textwrap.dedent(
    """
    import sys, time
    from filelock import FileLock
    lock = FileLock(sys.argv[1])
    lock.acquire()  # kept in a variable: a collected FileLock releases itself
    print("locked", flush=True)
    time.sleep(60)
    """
)


def test_lock_of_a_killed_process_does_not_block(root: Path, mirror: MirrorServer) -> None:
    cache.ensure_root(root)
    lock = cache.lock_path(ENTRY.sha256, root)
    holder = subprocess.Popen([sys.executable, "-c", LOCKER, str(lock)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
    messages: list[str] = []
    results = []
    worker = threading.Thread(target=lambda: results.append(
        fetch(ENTRY, ENTRY.file, sources=[mirror_source(mirror)], progress=False, log=messages.append)))
    worker.start()
    wait_for(lambda: messages)
    assert "waiting for another zoo process" in messages[0]
    time.sleep(0.3)
    assert worker.is_alive() and mirror.requests == []  # a live holder is waited for

    with holder:
        holder.kill()
    worker.join(timeout=20)
    assert not worker.is_alive(), "the lock of a killed process still blocks"
    assert lock.exists() and results[0].downloaded
    assert_cached(root)


# -- offline ------------------------------------------------------------------------------


@pytest.mark.parametrize(("env", "offline"), [("ZOO_OFFLINE", None), ("HF_HUB_OFFLINE", None), (None, True)])
def test_offline_makes_no_request(
    root: Path, mirror: MirrorServer, monkeypatch: pytest.MonkeyPatch, env: str | None, offline: bool | None
) -> None:
    if env:
        monkeypatch.setenv(env, "1")
    with pytest.raises(NotCachedError) as caught:
        fetch(ENTRY, ENTRY.file, sources=[mirror_source(mirror)], offline=offline, progress=False)
    assert "zoo cache import" in str(caught.value) and "fake-1" in str(caught.value)
    assert caught.value.path == str(cache.view_path(ENTRY, ENTRY.file, root))
    assert mirror.requests == []
    assert_not_cached(root)

    fetch(ENTRY, ENTRY.file, sources=[mirror_source(mirror)], offline=False, progress=False)
    result = fetch(ENTRY, ENTRY.file, sources=[mirror_source(mirror)], offline=offline, progress=False)
    assert (result.downloaded, result.source) == (False, "cache")
    with pytest.raises(DownloadError, match="offline"):
        fetch(ENTRY, ENTRY.file, sources=[mirror_source(mirror)], offline=offline, force=True, progress=False)
    assert len(mirror.requests) == 1
    assert_cached(root)


# -- import_file ----------------------------------------------------------------------------


def test_import_file_accepts_the_right_bytes(root: Path, tmp_path: Path) -> None:
    local = tmp_path / "downloaded.onnx"
    local.write_bytes(DATA)
    result = import_file(ENTRY, ENTRY.file, local)
    assert (result.downloaded, result.source) == (False, str(local))
    assert local.read_bytes() == DATA
    assert_cached(root)


@pytest.mark.parametrize("data", [DATA[:-1] + b"\0", DATA[:1000]], ids=["same-size", "short"])
def test_import_file_refuses_wrong_bytes(root: Path, tmp_path: Path, data: bytes) -> None:
    local = tmp_path / "downloaded.onnx"
    local.write_bytes(data)
    with pytest.raises(HashMismatchError) as caught:
        import_file(ENTRY, ENTRY.file, local)
    assert (caught.value.got_sha256, caught.value.got_size) == (sha256(data), len(data))
    assert local.read_bytes() == data
    assert_not_cached(root)
    assert list((root / "partial").iterdir()) == []


def test_import_file_missing(tmp_path: Path) -> None:
    with pytest.raises(CacheError, match="no such file"):
        import_file(ENTRY, ENTRY.file, tmp_path / "nope.onnx")


# -- safe_extract -------------------------------------------------------------------------


def make_tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            info.size = len(data) if info.isfile() else 0
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return path


def member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, linkname, 0o644
    return info


@pytest.mark.parametrize(
    ("members", "limit", "why"),
    [
        pytest.param([(member("../x"), b"x")], None, "'..' component", id="parent-traversal"),
        pytest.param([(member("a/../../x"), b"x")], None, "'..' component", id="nested-traversal"),
        pytest.param([(member("/tmp/x"), b"x")], None, "absolute path", id="absolute"),
        pytest.param([(member("ln", tarfile.SYMTYPE, "../../etc/passwd"), b"")], None, "outside", id="symlink-out"),
        pytest.param([(member("ln", tarfile.SYMTYPE, "/etc/passwd"), b"")], None, "outside", id="symlink-absolute"),
        pytest.param([(member("ln", tarfile.LNKTYPE, "../outside"), b"")], None, "outside", id="hardlink-out"),
        pytest.param([(member("dev", tarfile.CHRTYPE), b"")], None, "device or fifo", id="char-device"),
        pytest.param([(member("fifo", tarfile.FIFOTYPE), b"")], None, "device or fifo", id="fifo"),
        pytest.param([(member("a"), b"x" * 60), (member("b"), b"x" * 60)], 100, "above the limit", id="too-big"),
    ],
)
def test_safe_extract_refuses(tmp_path: Path, members: list, limit: int | None, why: str) -> None:
    archive = make_tar(tmp_path / "bad.tar.gz", [(member("ok.pb"), b"fine"), *members])
    dest = tmp_path / "out" / "test_data"
    with pytest.raises(DownloadError, match=why):
        safe_extract(archive, dest, **({} if limit is None else {"max_size": limit}))
    assert list((tmp_path / "out").iterdir()) == []  # nothing extracted, no temp dir left
    assert not (tmp_path / "x").exists()


def test_safe_extract_good_archive_replaces_dest(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "good.tar.gz", [
        (member("test_data_set_0", tarfile.DIRTYPE), b""),
        (member("test_data_set_0/input_0.pb"), b"input"),
        (member("test_data_set_0/output_0.pb"), b"output"),
        (member("test_data_set_0/same.pb", tarfile.LNKTYPE, "test_data_set_0/input_0.pb"), b""),
        (member("latest", tarfile.SYMTYPE, "test_data_set_0"), b""),
    ])
    dest = tmp_path / "out" / "test_data"
    dest.mkdir(parents=True)
    (dest / "stale.pb").write_bytes(b"old")
    assert safe_extract(archive, dest) == dest
    assert (dest / "test_data_set_0" / "input_0.pb").read_bytes() == b"input"
    assert (dest / "test_data_set_0" / "same.pb").read_bytes() == b"input"
    assert (dest / "latest" / "output_0.pb").read_bytes() == b"output"
    assert not (dest / "stale.pb").exists()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["test_data"]


def test_safe_extract_unreadable_archive(tmp_path: Path) -> None:
    archive = tmp_path / "broken.tar.gz"
    archive.write_bytes(b"not a tar")
    with pytest.raises(DownloadError, match="cannot be read"):
        safe_extract(archive, tmp_path / "out")


def test_download_module_imports_nothing_heavy() -> None:
    code = ("import sys, zoo.store.download, zoo.store.archive, zoo.store.sources, zoo.store.cache; "
            "print([m for m in ('requests', 'huggingface_hub', 'tqdm', 'filelock', 'numpy') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_file_entry_view_uses_file_name(root: Path, mirror: MirrorServer) -> None:
    """A second file of a model (e.g. test data) gets its own view beside the model file."""
    extra = b"test data bytes"
    extra_file = FileEntry(path="validated/x/test_data.tar.gz", sha256=sha256(extra), size=len(extra))
    mirror.files[extra_file.path] = extra
    result = fetch(ENTRY, extra_file, sources=[mirror_source(mirror, extra_file.path)], progress=False)
    assert result.path == root / "models" / "fake-1" / "test_data.tar.gz"
    assert result.path.read_bytes() == extra


# -- parallel Range requests (zoo.store.ranges) ---------------------------------------------

BIG = random.Random(9).randbytes(6 * MIB + 12345)  # 7 pieces of 1 MiB (MIN_PIECE) with 4 connections
BIG_ENTRY = make_entry(BIG, model_id="fake-big")


@pytest.fixture
def big_mirror():
    with MirrorServer({ZOO_PATH: BIG}) as server:
        yield server


def piece_starts(server: MirrorServer) -> list[int]:
    """The first byte each GET asked for (0 for a GET without Range)."""
    return sorted(int(r.range.split("=")[1].split("-")[0]) if r.range else 0 for r in server.gets())


@pytest.mark.parametrize(("size", "asked", "connections"), [
    (10 * MIB, None, 1), (ranges.AUTO_SIZE - 1, None, 1), (ranges.AUTO_SIZE, None, ranges.AUTO_CONNECTIONS),
    (10 * MIB, 4, 4), (10 * MIB, 0, 1), (10 * MIB, 99, ranges.MAX_CONNECTIONS),
])
def test_connections_for(size: int, asked: int | None, connections: int) -> None:
    assert ranges.connections_for(size, asked) == connections


@pytest.mark.parametrize(("size", "connections", "count"), [(len(BIG), 4, 7), (1, 4, 1), (300 * MIB, 4, 16),
                                                           (10_000 * MIB, 4, 157)])
def test_plan_pieces_cover_the_file_in_order(size: int, connections: int, count: int) -> None:
    pieces = ranges.plan_pieces(size, connections)
    assert len(pieces) == count
    assert pieces[0][0] == 0 and pieces[-1][1] == size
    assert all(a[1] == b[0] for a, b in zip(pieces, pieces[1:]))
    assert all(ranges.MIN_PIECE <= end - start <= ranges.MAX_PIECE for start, end in pieces[:-1])


def test_parallel_download_gets_each_piece_once(root: Path, big_mirror: MirrorServer) -> None:
    result = fetch(BIG_ENTRY, BIG_ENTRY.file, sources=[mirror_source(big_mirror)], progress=False, connections=4)
    assert result.downloaded
    assert_cached(root, BIG_ENTRY, BIG)
    asked = sorted(r.range for r in big_mirror.gets())
    want = sorted(f"bytes={start}-{end - 1}" for start, end in ranges.plan_pieces(len(BIG), 4))
    assert asked == want
    assert not ranges.record_path(cache.partial_path(BIG_ENTRY.sha256, root)).exists()


def test_parallel_falls_back_to_one_connection_when_range_is_ignored(root: Path, big_mirror: MirrorServer) -> None:
    big_mirror.inject(ZOO_PATH, Fault(ignore_range=True), forever=True)
    logged: list[str] = []
    fetch(BIG_ENTRY, BIG_ENTRY.file, sources=[mirror_source(big_mirror)], progress=False, connections=4,
          log=logged.append)
    assert_cached(root, BIG_ENTRY, BIG)
    ranges_asked = [r.range for r in big_mirror.gets()]
    assert ranges_asked[0] == "bytes=0-1048575" and ranges_asked[1:] == [None]  # the probe, then one stream
    assert any("ignored a Range request" in line and "one connection" in line for line in logged)


def test_parallel_resumes_only_what_a_cut_lost(root: Path, big_mirror: MirrorServer) -> None:
    # The probe (piece 0) goes through; the next GET is cut after 300,000 bytes: its connection asks again
    # for the rest of that piece only.
    big_mirror.inject(ZOO_PATH, Fault(), Fault(drop_after=300_000))
    fetch(BIG_ENTRY, BIG_ENTRY.file, sources=[mirror_source(big_mirror)], progress=False, connections=4)
    assert_cached(root, BIG_ENTRY, BIG)
    starts = piece_starts(big_mirror)
    pieces = [start for start, _ in ranges.plan_pieces(len(BIG), 4)]
    assert [s for s in starts if s in pieces] == pieces  # each piece asked for once from its start
    [resumed] = [s for s in starts if s not in pieces]
    assert resumed % MIB == 300_000  # after the kept bytes of the cut piece


def test_parallel_corruption_is_detected(root: Path, big_mirror: MirrorServer) -> None:
    big_mirror.inject(ZOO_PATH, Fault(corrupt_at=3 * MIB + 7), forever=True)
    with pytest.raises(HashMismatchError) as caught:
        fetch(BIG_ENTRY, BIG_ENTRY.file, sources=[mirror_source(big_mirror)], progress=False, connections=4,
              log=lambda _: None)
    assert caught.value.got_size == len(BIG) and caught.value.got_sha256 != BIG_ENTRY.sha256
    assert_not_cached(root, BIG_ENTRY)
    assert not ranges.record_path(cache.partial_path(BIG_ENTRY.sha256, root)).exists()


def test_parallel_resumes_a_one_connection_prefix(root: Path, big_mirror: MirrorServer) -> None:
    kept = MIB + MIB // 2
    seed_partial(root, BIG[:kept], BIG_ENTRY)
    fetch(BIG_ENTRY, BIG_ENTRY.file, sources=[mirror_source(big_mirror)], progress=False, connections=4)
    assert_cached(root, BIG_ENTRY, BIG)
    assert piece_starts(big_mirror)[0] == kept  # nothing before the kept prefix is asked for


def test_one_connection_resumes_a_parallel_partial(root: Path, big_mirror: MirrorServer,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZOO_RETRIES", "1")
    big_mirror.inject(ZOO_PATH, Fault(), Fault(status=404), forever=True)  # piece 0, then this source is gone
    with pytest.raises(DownloadError):
        fetch(BIG_ENTRY, BIG_ENTRY.file, sources=[mirror_source(big_mirror)], progress=False, connections=4,
              log=lambda _: None)
    partial = cache.partial_path(BIG_ENTRY.sha256, root)
    pieces = json.loads(ranges.record_path(partial).read_text())["pieces"]
    prefix = 0  # what one connection may keep: the done bytes from the start, up to the first gap
    for start, end, done in pieces:
        if start != prefix:
            break
        prefix = start + done
        if done < end - start:
            break
    big_mirror.clear_faults()
    fetch(BIG_ENTRY, BIG_ENTRY.file, sources=[mirror_source(big_mirror)], progress=False, connections=1)
    assert_cached(root, BIG_ENTRY, BIG)
    # Aborted connections of the first call may still land on the server: count open-ended GETs only.
    [single] = [r for r in big_mirror.gets() if r.range is None or r.range.endswith("-")]
    assert single.range == (f"bytes={prefix}-" if prefix else None)
    assert not ranges.record_path(partial).exists()


def test_parallel_kill_9_then_resume_skips_finished_pieces(root: Path) -> None:
    # 512 KiB/s per connection: the first 4 pieces end at ~2 s, the last 3 at ~4 s, so the kill lands
    # between them even when the record (rewritten every 0.5 s) or this poll lags on a busy machine.
    with MirrorServer({ZOO_PATH: BIG}, cap=MIB // 2) as server:
        child = spawn_fetch(mirror_source(server).url, BIG_ENTRY, connections=4)
        partial = cache.partial_path(BIG_ENTRY.sha256, root)
        record = ranges.record_path(partial)

        def finished() -> list[int]:
            try:
                data = json.loads(record.read_text())
            except (OSError, ValueError):
                return []
            return [start for start, end, done in data["pieces"] if done == end - start]

        wait_for(lambda: len(finished()) >= 2)
        child.send_signal(signal.SIGKILL)
        child.communicate()
        done = finished()
        assert child.returncode == -signal.SIGKILL and len(done) < 7, "the download ended before the kill"
        asked_before = len(server.gets())
        server.cap = None
        fetch(BIG_ENTRY, BIG_ENTRY.file, sources=[mirror_source(server)], progress=False, connections=4)
        assert_cached(root, BIG_ENTRY, BIG)
        again = piece_starts_of(server.gets()[asked_before:])
        assert again and not set(again) & set(done)


def piece_starts_of(gets: list) -> list[int]:
    return [int(r.range.split("=")[1].split("-")[0]) for r in gets]


@pytest.mark.parametrize("capped", [True, False], ids=["slow-stream-goes-parallel", "fast-stream-stays-alone"])
def test_automatic_connections_follow_the_stream_speed(root: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capped: bool) -> None:
    # Scaled down: "large" is 2 MiB here, a stream is judged after 0.2 s, and "slow" is 4 MB/s.
    monkeypatch.setattr(ranges, "AUTO_SIZE", 2 * MIB)
    monkeypatch.setattr(ranges, "PACE_SECONDS", 0.2)
    monkeypatch.setattr(ranges, "SLOW_STREAM", 4e6)
    logged: list[str] = []
    with MirrorServer({ZOO_PATH: BIG}, cap=2 * MIB if capped else None) as server:
        fetch(BIG_ENTRY, BIG_ENTRY.file, sources=[mirror_source(server)], progress=False, log=logged.append)
        asked = [r.range for r in server.gets()]
    assert_cached(root, BIG_ENTRY, BIG)
    assert asked[0] is None  # one plain stream first
    if not capped:
        assert asked == [None] and not logged
        return
    assert any("going on over 4 connections" in line for line in logged), logged
    starts = sorted(int(r.split("=")[1].split("-")[0]) for r in asked[1:])
    assert len(starts) >= 2 and starts[0] > 0  # the rest in pieces, after the bytes the stream kept

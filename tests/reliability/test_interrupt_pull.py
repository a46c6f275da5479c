"""Ctrl-C during `zoo pull` (a real SIGINT to a real process) stops it at once and keeps the partial;
and what a pull prints on stderr when stderr is a pipe (CI logs, notebooks): two lines, no bar.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from reliability_helpers import (
    MIB,
    Mirror,
    assert_cache_clean,
    blob_of,
    partial_of,
    spawn_zoo,
    synthetic,
    use_models,
    zoo,
)

BIG = synthetic("rel-int-1", 8 * MIB, seed=21)
OTHER = synthetic("rel-int-2", 8 * MIB, seed=22)
SMALL = synthetic("rel-int-3", MIB + 5, seed=23)


@pytest.fixture
def slow_mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    use_models(monkeypatch, tmp_path / "manifests", BIG, OTHER, SMALL)
    with Mirror({**BIG.files(), **OTHER.files(), **SMALL.files()}) as mirror:
        mirror.rate = 1 * MIB  # 8 s per big file: Ctrl-C lands well inside it
        monkeypatch.setenv("ZOO_MIRROR", mirror.url)
        yield mirror


def wait_for(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def env_of(home: Path, mirror: Mirror) -> dict[str, str]:
    import os

    return {key: os.environ[key] for key in ("ZOO_MANIFESTS", "ZOO_RETRIES", "ZOO_RETRY_BACKOFF", "ZOO_TIMEOUT",
                                             "HF_ENDPOINT", "HF_HOME")} | {"ZOO_HOME": str(home),
                                                                           "ZOO_MIRROR": mirror.url}


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_ctrl_c_stops_within_a_second_and_keeps_the_partial(
    slow_mirror: Mirror, isolated_env: Path, jobs: str
) -> None:
    models = [BIG] if jobs == "1" else [BIG, OTHER]
    proc = spawn_zoo("pull", "-j", jobs, *[m.model_id for m in models], env=env_of(isolated_env, slow_mirror))
    wait_for(lambda: all(partial_of(isolated_env, m).is_file() and partial_of(isolated_env, m).stat().st_size >= MIB
                         for m in models))
    interrupt_within_a_second(proc)
    kept = {}
    for model in models:
        partial = partial_of(isolated_env, model)
        kept[model.model_id] = partial.stat().st_size
        assert 0 < kept[model.model_id] < len(model.data)
        assert partial.read_bytes() == model.data[: kept[model.model_id]]  # a verified-later prefix, nothing else
        assert not blob_of(isolated_env, model).exists()

    slow_mirror.rate = None
    before = len(slow_mirror.gets())
    result = zoo("pull", "--quiet", "--json", *[m.model_id for m in models], env={"ZOO_HOME": str(isolated_env)})
    assert result.exit_code == 0, result.stderr
    ranges = sorted(r.range or "" for r in slow_mirror.gets()[before:])
    assert ranges == sorted(f"bytes={kept[m.model_id]}-" for m in models)  # resumed, not restarted
    for item, model in zip(json.loads(result.stdout), models):
        assert Path(item["path"]).read_bytes() == model.data
    assert assert_cache_clean(isolated_env) == len(models)


def test_stderr_pipe_gets_a_start_and_an_end_line(slow_mirror: Mirror, isolated_env: Path) -> None:
    slow_mirror.rate = None
    proc = spawn_zoo("pull", SMALL.model_id, env=env_of(isolated_env, slow_mirror))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out == f"{isolated_env / 'models' / SMALL.model_id / (SMALL.model_id + '.onnx')}\n"  # nothing else
    lines = err.splitlines()
    assert "\r" not in err and "\x1b" not in err and "%|" not in err  # no bar fragments
    assert len(lines) == 2, err
    assert "downloading" in lines[0] and "1.0 MB" in lines[0]
    assert "downloaded" in lines[1] and "MB/s" in lines[1] and f"from {slow_mirror.url}/{SMALL.path}" in lines[1]


def test_quiet_pull_prints_nothing_on_stderr(slow_mirror: Mirror, isolated_env: Path) -> None:
    slow_mirror.rate = None
    proc = spawn_zoo("pull", "-q", SMALL.model_id, env=env_of(isolated_env, slow_mirror))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and err == ""
    assert Path(out.strip()).read_bytes() == SMALL.data


def test_ctrl_c_stops_a_parallel_pull_within_a_second_and_resumes_per_piece(
    slow_mirror: Mirror, isolated_env: Path
) -> None:
    from zoo.store import ranges

    record = ranges.record_path(partial_of(isolated_env, BIG))

    def finished() -> list[int]:
        try:
            pieces = json.loads(record.read_text())["pieces"]
        except (OSError, ValueError):
            return []
        return [start for start, end, done in pieces if done == end - start]

    proc = spawn_zoo("pull", "-c", "4", BIG.model_id, env=env_of(isolated_env, slow_mirror))
    wait_for(lambda: len(finished()) >= 1)
    interrupt_within_a_second(proc)
    assert not blob_of(isolated_env, BIG).exists()
    pieces = json.loads(record.read_text())["pieces"]
    data = partial_of(isolated_env, BIG).read_bytes()
    for start, _, done in pieces:  # every byte the record claims is on disk and right
        assert data[start : start + done] == BIG.data[start : start + done]
    done_starts = finished()

    slow_mirror.rate = None
    before = len(slow_mirror.gets())
    result = zoo("pull", "--quiet", "-c", "4", BIG.model_id, env={"ZOO_HOME": str(isolated_env)})
    assert result.exit_code == 0, result.stderr
    again = [int(r.range.split("=")[1].split("-")[0]) for r in slow_mirror.gets()[before:] if r.range]
    assert again and not set(again) & set(done_starts)  # finished pieces are not fetched again
    assert not record.exists()
    assert assert_cache_clean(isolated_env) == 1


def interrupt_within_a_second(proc: subprocess.Popen[str]) -> None:
    """Ctrl-C a running `zoo pull`: exit 130 within 1.5 s, saying so, nothing on stdout."""
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    took = time.monotonic() - sent
    assert proc.returncode == 130, err
    assert took < 1.5, f"exit took {took:.2f} s after SIGINT"
    assert "interrupted" in err and "Traceback" not in err and out == ""


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_ctrl_c_ends_a_wait_for_another_process_lock(slow_mirror: Mirror, isolated_env: Path, jobs: str) -> None:
    """A pull waiting for the blob another zoo process is downloading stops at Ctrl-C, in worker threads too."""
    env = env_of(isolated_env, slow_mirror)
    holder = spawn_zoo("pull", "-j", "2", BIG.model_id, OTHER.model_id, env=env)
    try:
        wait_for(lambda: all(partial_of(isolated_env, m).is_file() for m in (BIG, OTHER)))
        waiter = spawn_zoo("pull", "-j", jobs, BIG.model_id, OTHER.model_id, env=env)
        assert waiter.stderr is not None
        line = waiter.stderr.readline()  # the waiter says what it waits for before it blocks
        assert "waiting for another zoo process" in line, line
        interrupt_within_a_second(waiter)
    finally:
        holder.send_signal(signal.SIGINT)
        holder.communicate(timeout=30)
    for model in (BIG, OTHER):  # the holder's partials are the holder's: the waiter touched nothing
        kept = partial_of(isolated_env, model).read_bytes()
        assert 0 < len(kept) < len(model.data) and kept == model.data[: len(kept)]

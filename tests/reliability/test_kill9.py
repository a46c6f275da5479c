"""`kill -9` of a `zoo pull` process at random points: the cache stays verified and the next pull completes.

The mirror is throttled so the download takes about as long as the process takes to start, and each kill
lands at a random time in [0, a full pull's duration] (random.Random(SEED): the delays are reproducible).
Every trial gets its own ZOO_HOME, so each pull starts from nothing.
"""

from __future__ import annotations

import random
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

MODEL = synthetic("rel-kill-1", 4 * MIB, seed=2)
TRIALS = 20
SEED = 5  # reproducible delays; its 20 draws cover the whole pull, 8 of them in (0.7, 0.95) of it
MIN_MID_DOWNLOAD = 5  # the download is about half of a pull, so about half of the kills should land in it


def timed_pull(env: dict[str, str]) -> float:
    started = time.monotonic()
    proc = spawn_zoo("pull", "--quiet", MODEL.model_id, env=env)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return time.monotonic() - started


def kill_at(delay: float, env: dict[str, str]) -> int:
    """Start a pull, SIGKILL it after `delay` seconds; its exit status (0 when it finished first)."""
    proc = spawn_zoo("pull", "--quiet", MODEL.model_id, env=env)
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:  # still running: the usual case
        proc.kill()
    proc.communicate(timeout=30)
    return proc.returncode


def finish(mirror: Mirror, home: Path, kept: int | None) -> None:
    """Pull again (unthrottled, in process): it completes, resuming what the killed pull kept."""
    before = len(mirror.gets())
    result = zoo("pull", "--quiet", MODEL.model_id, env={"ZOO_HOME": str(home)})
    assert result.exit_code == 0, result.stderr
    assert Path(result.stdout.strip()).read_bytes() == MODEL.data
    ranges = [r.range for r in mirror.gets()[before:]]
    if kept is None:  # finished before the kill, or killed with no partial: a cache hit or a full download
        assert ranges in ([], [None])
    elif kept == len(MODEL.data):  # every byte was there, only the publish was missing
        assert ranges == []
    else:
        assert ranges == ([f"bytes={kept}-"] if kept else [None])


def test_kill_9_at_random_points(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_models(monkeypatch, tmp_path / "manifests", MODEL)
    with Mirror(MODEL.files()) as mirror:
        monkeypatch.setenv("ZOO_MIRROR", mirror.url)  # the subprocesses inherit it
        startup = timed_pull({"ZOO_HOME": str(tmp_path / "calibrate-start")})  # unthrottled: ~all start-up
        rate = len(MODEL.data) / min(max(0.5, startup), 2.0)  # the download lasts about as long as the start-up
        mirror.rate = rate
        full = timed_pull({"ZOO_HOME": str(tmp_path / "calibrate-full")})

        rng, mid_download, finished = random.Random(SEED), 0, 0
        for trial in range(TRIALS):
            home = tmp_path / f"trial-{trial}"
            mirror.rate = rate
            status = kill_at(rng.uniform(0, full), {"ZOO_HOME": str(home)})
            finished += status == 0
            partial = partial_of(home, MODEL)
            kept = partial.stat().st_size if partial.exists() else None
            if kept is not None:
                mid_download += 1
                assert partial.read_bytes() == MODEL.data[:kept]  # a partial only ever holds a correct prefix
                assert not blob_of(home, MODEL).exists()
            assert_cache_clean(home)
            mirror.rate = None
            finish(mirror, home, kept)
            assert assert_cache_clean(home) == 1
    assert mid_download >= MIN_MID_DOWNLOAD, (
        f"{mid_download} of {TRIALS} kills landed mid-download ({finished} pulls finished first; "
        f"start-up {startup:.2f} s, throttled pull {full:.2f} s)")

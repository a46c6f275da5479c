"""bench_serve --client-cores: the load generator's threads run where they are pinned, and bad lists are refused."""

from __future__ import annotations

import argparse
import os
import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the benchmarks package beside tests/

from benchmarks.bench_serve import THREADS, parse_cores, pinned

needs_affinity = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="thread affinity is Linux-only")


@needs_affinity
def test_threads_started_while_pinned_run_on_those_cores_and_the_caller_is_restored() -> None:
    before = os.sched_getaffinity(0)
    core = min(before)
    seen: list[set[int]] = []
    with pinned(frozenset({core})):
        worker = threading.Thread(target=lambda: seen.append(os.sched_getaffinity(0)))
        worker.start()
        worker.join()
        inside = os.sched_getaffinity(0)
    assert seen == [{core}] and inside == {core}
    assert os.sched_getaffinity(0) == before


@needs_affinity
@pytest.mark.parametrize("text", ["x", "1-", "-1", "1,,2"])
def test_a_malformed_core_list_is_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="not a core list"):
        parse_cores(text)


@needs_affinity
def test_cores_the_process_lacks_or_that_leave_the_servers_too_few_are_refused() -> None:
    mine = sorted(os.sched_getaffinity(0))
    with pytest.raises(argparse.ArgumentTypeError, match="not this process's"):
        parse_cores(str(mine[-1] + 1))
    if len(mine) - 1 < THREADS:
        with pytest.raises(argparse.ArgumentTypeError, match=f"the servers need {THREADS} cores"):
            parse_cores(str(mine[0]))
    else:
        assert parse_cores(str(mine[0])) == frozenset({mine[0]})

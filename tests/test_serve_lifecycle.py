"""`zoo serve` lifecycle: lazy once-only loads, LRU and keep-alive unloads, tokens, bind policy, SIGTERM drain."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import zoo_cli
from serve_helpers import IMAGES, gather_model, seed_home, start

BATCHED, FIXED = "mobilenetv2-12-int8", "shufflenet-v2-12-int8"
TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _loaded(url: str) -> list[str]:
    return sorted(row["name"] for row in requests.get(f"{url}/v1/models", headers=AUTH, timeout=30).json()["loaded"])


def test_lazy_loads_once_then_lru_and_keep_alive(tmp_path: Path) -> None:
    from zoo.serve.models import PoolConfig

    home = seed_home(tmp_path / "home", BATCHED, FIXED)
    server = start(home, tmp_path / "serve.log", "--max-loaded", "1", "--keep-alive", "1s", env={"ZOO_SERVE_TOKEN":
                                                                                                 TOKEN})
    try:
        assert _loaded(server.url) == []  # nothing named at start: ready at once, models load on first use
        frog = (IMAGES / "frog.jpg").read_bytes()

        def post(model: str) -> str:
            r = requests.post(f"{server.url}/v1/models/{model}/predict", data=frog, headers=AUTH, timeout=60)
            assert r.status_code == 200, r.text
            return str(r.json()["predictions"][0]["label"])

        with ThreadPoolExecutor(8) as pool:  # eight concurrent first requests: one load
            assert list(pool.map(post, [BATCHED] * 8)) == ["tree frog"] * 8
        assert server.metric("zoo_model_loads_total", model=BATCHED, outcome="ok") == 1
        assert post(FIXED) == "tree frog"
        assert _loaded(server.url) == [FIXED]  # --max-loaded 1: the least recently used one went
        row = requests.get(f"{server.url}/v1/models", headers=AUTH, timeout=30).json()["loaded"][0]
        lone = PoolConfig().lone_threads  # the server's defaults on this machine's cores
        assert row["lone_run_threads"] == lone
        if lone is None:  # one core: its one run went through the lanes' session, and was timed
            assert list(row["run_ms_per_row"]) == ["images"] and row["run_ms_per_row"]["images"]["1"] > 0
        else:  # it ran alone, on the session of every core's threads: no measure of the run sizes
            assert row["run_ms_per_row"] == {}
        deadline = time.monotonic() + 10
        while _loaded(server.url) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _loaded(server.url) == []  # idle past --keep-alive 1s: unloaded
        assert server.metric("zoo_models_loaded") == 0
        assert post(BATCHED) == "tree frog"  # and loaded again when asked
        assert server.metric("zoo_model_loads_total", model=BATCHED, outcome="ok") == 2
    finally:
        assert server.stop() == 0, server.stderr()


def test_token_is_required_except_for_probes(tmp_path: Path) -> None:
    triton = pytest.importorskip("tritonclient.http", reason="needs tritonclient[http]: pip install '.[test]'")
    home = seed_home(tmp_path / "home", FIXED)
    server = start(home, tmp_path / "serve.log", FIXED, "--token", TOKEN)
    try:
        assert "needs `Authorization: Bearer <token>`" in server.stderr()
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            r = requests.get(f"{server.url}/v2/models/{FIXED}", headers=headers, timeout=30)
            assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer"
            assert "missing or wrong bearer token" in r.json()["error"]
        assert requests.get(f"{server.url}/v2/health/ready", timeout=30).status_code == 200
        client = triton.InferenceServerClient(server.url.removeprefix("http://"))
        assert client.is_model_ready(FIXED, headers=AUTH)
        assert client.get_model_metadata(FIXED, headers=AUTH)["name"] == FIXED
        assert not client.is_model_ready(FIXED)  # no token: refused
    finally:
        assert server.stop() == 0, server.stderr()


def test_sigterm_drains_a_slow_upload_and_others_are_not_blocked(tmp_path: Path) -> None:
    home = seed_home(tmp_path / "home", BATCHED)
    server = start(home, tmp_path / "serve.log", BATCHED)
    frog = (IMAGES / "frog.jpg").read_bytes()
    slow = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    try:
        head = (f"POST /v1/models/{BATCHED}/predict HTTP/1.1\r\nHost: x\r\nContent-Length: {len(frog)}\r\n"
                "Content-Type: image/jpeg\r\n\r\n").encode()
        slow.sendall(head + frog[:1000])  # half an upload, then a pause
        time.sleep(0.2)
        fast = requests.post(f"{server.url}/v1/models/{BATCHED}/predict", data=frog, timeout=30)
        assert fast.status_code == 200  # the slow client blocks no one
        server.proc.send_signal(15)
        time.sleep(0.5)
        assert server.proc.poll() is None  # still draining: the slow request is in flight
        slow.sendall(frog[1000:])
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = slow.recv(65536)
            if not chunk:
                break
            answer += chunk
    finally:
        slow.close()
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["predictions"][0]["label"] == "tree frog"
    assert server.proc.wait(30) == 0, server.stderr()


@pytest.mark.parametrize(("args", "message"), [
    (["--host", "0.0.0.0"], "binding 0.0.0.0 would let other machines call the server, and no token is set"),
    (["--host", "0.0.0.0", "--token", "x", "--no-auth"], "--token and --no-auth contradict each other"),
    (["--keep-alive", "soon"], "--keep-alive 'soon' is not a duration"),
    (["--max-body", "big"], "--max-body 'big' is not a size"),
    (["--max-body", "9" * 400], "... (400 characters) is over 1000 TB"),  # inf to float(): an OverflowError
    (["--body-timeout", "0"], "--body-timeout must be more than 0"),
    (["--body-timeout", "later"], "--body-timeout 'later' is not a duration"),
    (["no-such-model-at-all"], "unknown model 'no-such-model-at-all'"),
    # No client sends these as they are in a header: every request was refused, or a 500 (UnicodeEncodeError).
    (["--host", "0.0.0.0", "--token", "pässwörd"], "the token holds characters other than visible ASCII"),
    (["--host", "0.0.0.0", "--token", "two words"], "the token holds characters other than visible ASCII"),
])
def test_bad_start_up_exits_2(args: list[str], message: str) -> None:
    result = zoo_cli("serve", *args, "--port", "0", code=2)
    assert message in result.stderr and "hint:" in result.stderr


def test_a_start_up_model_that_fails_to_load_stops_the_server_exit_2(tmp_path: Path) -> None:
    """It stayed up before, never ready: a supervisor saw a live process, a script a hang."""
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"not a protobuf at all")
    server = start(tmp_path / "home", tmp_path / "serve.log", str(bad), ready=False)
    assert server.proc.wait(30) == 2, server.stderr()
    last = server.stderr().strip().splitlines()[-2:]
    assert last[0].startswith("error: model model.onnx failed to load: onnxruntime cannot load"), last
    assert last[1].startswith("hint: check the file is an ONNX model"), last
    with pytest.raises(requests.ConnectionError):  # the port is closed with it
        requests.get(f"{server.url}/v2/health/live", timeout=5)


def test_token_matches_compares_the_header_bytes_as_they_came() -> None:
    from zoo.serve.auth import token_matches

    assert token_matches("Bearer s3cr3t-Token_~+/=", "s3cr3t-Token_~+/=")
    assert not token_matches("Bearer s3cr3t", "s3cr3t-longer") and not token_matches("s3cr3t", "s3cr3t")
    assert not token_matches("Bearer p\xc3\xa4ss", "pass")  # UTF-8 bytes, decoded as latin-1: refused, no error
    assert not token_matches(None, "s3cr3t")


def test_serve_help_stays_light() -> None:
    code = ("import sys; from zoo.cli import cli\ntry: cli(['serve', '--help'])\nexcept SystemExit: pass\n"
            "print([m for m in ('numpy', 'onnxruntime', 'starlette', 'uvicorn', 'prometheus_client') "
            "if m in sys.modules], file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert "--max-delay-ms" in proc.stdout and proc.stderr.strip().splitlines()[-1] == "[]"


def _gated_batcher(slots: int) -> tuple[Any, list[list[int]], threading.Event]:
    """A Batcher over a run that records its groups and blocks until the returned event is set."""
    from zoo.serve.batching import Batcher, Lanes

    groups: list[list[int]] = []
    gate = threading.Event()

    def run(items: list[int]) -> list[int]:
        groups.append(list(items))
        gate.wait(10)
        return [i * 10 for i in items]

    batcher: Batcher[int, int] = Batcher(run, max_batch=8, lanes=Lanes(slots, max_delay=0.5))
    return batcher, groups, gate


def test_batcher_runs_a_lone_item_at_once_and_batches_what_queues_behind_busy_slots() -> None:
    import asyncio

    async def scenario() -> tuple[list[int], list[list[int]], float]:
        batcher, groups, gate = _gated_batcher(slots=1)
        started = time.monotonic()
        first = asyncio.ensure_future(batcher.submit("k", 1))
        await asyncio.sleep(0.05)  # 1 holds the only slot; 2, 3, 4 queue behind it
        rest = [asyncio.ensure_future(batcher.submit("k", i)) for i in (2, 3, 4)]
        await asyncio.sleep(0.05)
        gate.set()
        results = await asyncio.gather(first, *rest)
        await batcher.close()
        return results, groups, time.monotonic() - started

    results, groups, took = asyncio.run(scenario())
    assert results == [10, 20, 30, 40]
    assert groups == [[1], [2, 3, 4]]  # the lone item did not wait for company; the queued ones ran together
    assert took < 0.45  # nobody waited out max_delay (0.5 s): nothing else was on its way


def test_batcher_keeps_a_cancelled_runs_slot_until_the_run_ends() -> None:
    import asyncio

    async def scenario() -> tuple[list[list[int]], int]:
        batcher, groups, gate = _gated_batcher(slots=1)
        first = asyncio.ensure_future(batcher.submit("k", 1))
        await asyncio.sleep(0.05)
        first.cancel()  # its client went away; the session run goes on in its thread
        await asyncio.sleep(0.01)
        second = asyncio.ensure_future(batcher.submit("k", 2))
        await asyncio.sleep(0.1)
        runs_while_busy = len(groups)  # 2 must not start beside the unfinished run of 1
        gate.set()
        assert await second == 20
        await batcher.close()
        return groups, runs_while_busy

    groups, runs_while_busy = asyncio.run(scenario())
    assert runs_while_busy == 1
    assert groups == [[1], [2]]


def test_a_free_worker_takes_the_next_group_without_the_event_loop() -> None:
    """Under load the loop is busy with HTTP: a worker waiting on it for its next group would idle its core."""
    import asyncio

    async def scenario() -> tuple[list[list[int]], list[int]]:
        batcher, groups, gate = _gated_batcher(slots=1)
        first = asyncio.ensure_future(batcher.submit("k", 1))
        await asyncio.sleep(0.05)
        rest = [asyncio.ensure_future(batcher.submit("k", i)) for i in (2, 3)]
        await asyncio.sleep(0)  # both queued behind the run of 1
        gate.set()
        time.sleep(0.3)  # the loop is blocked: no callback of it runs meanwhile
        seen_while_blocked = [list(g) for g in groups]
        results = await asyncio.gather(first, *rest)
        await batcher.close()
        return seen_while_blocked, results

    seen_while_blocked, results = asyncio.run(scenario())
    assert seen_while_blocked == [[1], [2, 3]]
    assert results == [10, 20, 30]


def test_a_failed_run_answers_its_group_and_the_lanes_go_on() -> None:
    import asyncio

    from zoo.serve.batching import Batcher, Lanes

    def run(items: list[int]) -> list[int]:
        if 0 in items:
            raise ValueError(f"cannot run {items}")
        return [i + 1 for i in items]

    async def scenario() -> tuple[list[object], int, int]:
        lanes = Lanes(1, max_delay=0.0)
        batcher: Batcher[int, int] = Batcher(run, max_batch=4, lanes=lanes)
        failed = await asyncio.gather(batcher.submit("k", 0), return_exceptions=True)
        after = await batcher.submit("k", 5)
        await batcher.close()
        lanes.close()
        for _ in range(100):  # the worker leaves once it sees the close
            if lanes.alive == 0:
                break
            await asyncio.sleep(0.01)
        alive_after_close = lanes.alive
        late = await batcher.submit("k", 7)  # a request that held the model as it was unloaded
        for _ in range(100):  # the worker that ran it leaves again: no thread stays behind
            if lanes.alive == 0:
                break
            await asyncio.sleep(0.01)
        return [*failed, after, late], alive_after_close, lanes.alive

    answers, alive_after_close, alive_at_the_end = asyncio.run(scenario())
    assert isinstance(answers[0], ValueError) and "cannot run [0]" in str(answers[0])
    assert answers[1:] == [6, 8]
    assert alive_after_close == 0 and alive_at_the_end == 0


def test_run_threads_share_the_cores_among_the_slots() -> None:
    from zoo.serve.models import PoolConfig, cpu_cores

    assert PoolConfig(slots=2).run_threads == max(1, cpu_cores() // 2)
    assert PoolConfig(slots=64).run_threads == 1
    assert PoolConfig(slots=2, threads=3).run_threads == 3  # --threads is taken as given


def test_runs_that_fill_the_cores_one_thread_each_keep_a_core_each() -> None:
    from zoo.serve.models import PoolConfig, usable_cores

    cores = usable_cores()
    if len(cores) < 2:
        pytest.skip(f"needs 2 cores to pin runs to; this process may use {len(cores)}")
    assert PoolConfig(slots=len(cores), threads=1).lane_cores == cores
    if len(cores) == 2:
        assert PoolConfig().lane_cores == cores  # the default on 2 cores: 2 runs of 1 thread
    assert PoolConfig(slots=len(cores), threads=2).lane_cores == ()  # runs of several threads: ORT's pool
    assert PoolConfig(slots=1, threads=1).lane_cores == ()
    assert PoolConfig(slots=len(cores) + 1, threads=1).lane_cores == ()  # more runs than cores: the scheduler


def test_lanes_given_cores_run_each_worker_on_its_own_core_also_when_they_come_back() -> None:
    import asyncio

    from zoo.serve.batching import Batcher, Lanes
    from zoo.serve.models import usable_cores

    cores = usable_cores()
    if len(cores) < 2:
        pytest.skip(f"needs 2 cores to pin workers to; this process may use {len(cores)}")
    cores = cores[:2]
    seen: list[tuple[str, frozenset[int]]] = []
    gate = threading.Barrier(2, timeout=10)  # both workers hold a run at once: two distinct workers report

    def run(items: list[int]) -> list[int]:
        seen.append((threading.current_thread().name, frozenset(os.sched_getaffinity(0))))
        gate.wait()
        return items

    async def both(lanes: Lanes) -> None:
        batcher: Batcher[int, int] = Batcher(run, max_batch=1, lanes=lanes)
        await asyncio.gather(batcher.submit("k", 1), batcher.submit("k", 2))
        await batcher.close()

    lanes = Lanes(2, max_delay=0.0, cores=cores)
    asyncio.run(both(lanes))
    lanes.close()
    for _ in range(200):
        if lanes.alive == 0:
            break
        time.sleep(0.01)
    asyncio.run(both(lanes))  # workers brought back after they left
    lanes.close()
    assert len(seen) == 4
    for pair in (seen[:2], seen[2:]):
        assert sorted(min(a) for _, a in pair) == sorted(cores), seen  # one worker on each core
        assert all(len(a) == 1 for _, a in pair), seen
    assert frozenset(os.sched_getaffinity(0)) >= frozenset(cores)  # the caller's own mask is untouched


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="nice is per thread only on Linux")
def test_workers_run_a_step_below_the_event_loop_and_leave_the_callers_priority_alone() -> None:
    import asyncio

    from zoo.serve.batching import WORKER_NICE, Batcher, Lanes

    base = os.getpriority(os.PRIO_PROCESS, os.getpid())
    if base + WORKER_NICE > 19:
        pytest.skip(f"this process already runs at nice {base}: no lower priority to give its workers")
    seen: list[int] = []

    def run(items: list[int]) -> list[int]:
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        return items

    async def some(lanes: Lanes) -> None:
        batcher: Batcher[int, int] = Batcher(run, max_batch=1, lanes=lanes)
        assert await asyncio.gather(*(batcher.submit("k", i) for i in range(4))) == [0, 1, 2, 3]
        await batcher.close()

    lanes = Lanes(2, max_delay=0.0)
    asyncio.run(some(lanes))
    lanes.close()
    assert seen == [base + WORKER_NICE] * 4
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == base  # the caller's thread is untouched
    assert os.getpriority(os.PRIO_PROCESS, os.getpid()) == base


def test_a_request_whose_values_fail_a_shared_run_fails_alone(tmp_path: Path, isolated_env: Path) -> None:
    """Token ids out of range failed the whole batch: every client in it got the one bad client's 500."""
    import numpy as np

    import zoo
    from zoo.serve.errors import RequestError
    from zoo.serve.metrics import Metrics
    from zoo.serve.models import PoolConfig, Served

    model = zoo.load(gather_model(tmp_path / "gather.onnx"), threads=1)
    served = Served("file:gather", model, config=PoolConfig(max_batch=4), metrics=Metrics(), pinned=False)
    try:
        good, bad = {"ids": np.array([[3]], np.int64)}, {"ids": np.array([[99]], np.int64)}
        results = served._run_tensors([good, bad, good])
        assert [type(r).__name__ for r in results] == ["dict", "RequestError", "dict"]
        assert results[0]["rows"].tolist() == [[[6.0, 7.0]]] and results[2]["rows"].tolist() == [[[6.0, 7.0]]]
        error = results[1]
        assert isinstance(error, RequestError) and error.status == 400
        assert error.what == ("onnxruntime cannot run gather.onnx on this input: Gather: indices element out of data "
                              "bounds, idx=99 must be within the inclusive range [-10,9]")
        assert served._run_tensors([good, good])[1]["rows"].tolist() == [[[6.0, 7.0]]]  # batched: one run
    finally:
        served.lanes.close()


def test_an_input_onnxruntime_refuses_is_a_400_over_http(tmp_path: Path) -> None:
    path = gather_model(tmp_path / "gather.onnx")
    server = start(tmp_path / "home", tmp_path / "serve.log", str(path))
    body = {"inputs": [{"name": "ids", "datatype": "INT64", "shape": [1, 1], "data": [99]}]}
    r = requests.post(f"{server.url}/v2/models/gather/infer", json=body, timeout=30)
    assert r.status_code == 400 and "cannot run gather.onnx on this input: Gather: indices" in r.json()["error"], r.text
    body["inputs"][0]["data"] = [4]
    r = requests.post(f"{server.url}/v2/models/gather/infer", json=body, timeout=30)
    assert r.status_code == 200 and r.json()["outputs"][0]["data"] == [8.0, 9.0]
    server.proc.send_signal(15)
    assert server.proc.wait(30) == 0 and "Traceback" not in server.stderr()


def _costs(max_batch: int = 4, **measured: float) -> Any:
    """A RowCosts that has measured these sizes (keyword r<rows>=CPU ms per row), one run each."""
    from zoo.serve.batching import RowCosts

    costs = RowCosts(max_batch)
    for name, ms in measured.items():
        rows = int(name.removeprefix("r"))
        costs.observe(rows, ms * rows / 1000)
    return costs


def test_run_sizes_not_yet_measured_are_tried_first_largest_first() -> None:
    costs = _costs()
    assert costs.goal() == 4  # nothing measured: wait for a full run, as a plain batcher does
    assert costs.rows_to_take(9) == 4 and costs.rows_to_take(3) == 3 and costs.rows_to_take(1) == 1
    assert _costs(r4=2.0).rows_to_take(9) == 3  # 4 is measured, 3 is not yet
    assert _costs(r1=2.0).rows_to_take(1) == 1  # a lone row runs alone whatever is measured


def test_runs_take_the_smallest_size_within_the_slack_of_the_cheapest() -> None:
    # Batches 2-7 % cheaper per row than singles (as measured on 2 cores): singles win, latency and queue kept.
    close = _costs(r1=2.37, r2=2.33, r3=2.21, r4=2.26)
    assert close.goal() == 1 and close.rows_to_take(8) == 1
    # A batch that saves more than the slack is taken; the smallest such, when a bigger one saves little more.
    paying = _costs(r1=10.0, r2=7.2, r3=7.1, r4=7.0)
    assert paying.goal() == 2 and paying.rows_to_take(8) == 2
    assert _costs(r1=10.0, r2=9.5, r3=9.4, r4=6.0).rows_to_take(8) == 4
    # Only what the queue holds is a choice: with 3 rows queued, 4's cost does not count.
    assert _costs(r1=10.0, r2=9.8, r3=9.6, r4=6.0).rows_to_take(3) == 1


def test_every_explore_th_choice_measures_another_size_in_turn() -> None:
    from zoo.serve.batching import RowCosts

    costs = _costs(r1=2.0, r2=3.0, r3=3.0, r4=3.0)
    picks = [costs.rows_to_take(4) for _ in range(3 * RowCosts.EXPLORE)]
    explored = [(i, n) for i, n in enumerate(picks, 1) if n != 1]
    assert [i for i, _ in explored] == [RowCosts.EXPLORE, 2 * RowCosts.EXPLORE, 3 * RowCosts.EXPLORE]
    assert sorted(n for _, n in explored) == [2, 3, 4]  # each other size in turn


def test_costs_are_moving_averages_and_sizes_past_max_batch_are_not_kept() -> None:
    from zoo.serve.batching import RowCosts

    costs = RowCosts(4)
    costs.observe(2, 0.004)  # 2 ms per row
    costs.observe(2, 0.012)  # 6 ms per row: the average moves a quarter of the way
    costs.observe(9, 0.009)  # one request's own 9 rows ran alone: not a size the batcher chose
    assert costs.snapshot() == pytest.approx({2: 0.002 + RowCosts.ALPHA * 0.004})
    costs.observe(0, 1.0)
    costs.observe(1, -1.0)
    assert list(costs.snapshot()) == [2]


def test_other_sizes_are_judged_against_the_reference_as_it_runs_now() -> None:
    # Singles measured at 2.0 ms, pairs at 2.1: then the machine slows down by half. The singles'
    # figure follows (their runs are the many); the pairs' follows with it, as a ratio, instead of
    # staying at a figure from the faster second and winning the choice by it.
    costs = _costs(r1=2.0, r2=2.1, r3=2.2, r4=2.3)
    for _ in range(40):
        costs.observe(1, 0.003)
    assert costs.goal() == 1 and costs.rows_to_take(8) == 1
    assert costs.snapshot()[2] == pytest.approx(0.003 * 2.1 / 2.0, rel=1e-3)
    # A size that really is cheaper, measured against the slower reference, takes over and becomes it.
    for _ in range(20):
        costs.observe(4, 4 * 0.0024)
        costs.observe(1, 0.003)
    assert costs.goal() == 4 and costs.rows_to_take(8) == 4
    assert costs.snapshot()[4] == pytest.approx(0.0024, rel=0.05)


def test_the_choice_holds_on_a_noisy_drifting_machine_where_sizes_cost_alike() -> None:
    """Runs of every size cost the same per row, times a drift of +-30 % over seconds and +-20 % noise per run
    (as on a shared 2-core VM): the batcher keeps to singles but for its explorations."""
    import math
    import random

    from zoo.serve.batching import RowCosts

    rng, costs, picks = random.Random(7), RowCosts(4), []
    for i in range(20000):  # about a minute of runs at 300 per second
        rows = costs.rows_to_take(8)
        speed = 1 + 0.3 * math.sin(i / 600)  # a slow swing, a few seconds long
        costs.observe(rows, rows * 0.002 * speed * rng.uniform(0.8, 1.2))
        picks.append(rows)
    steady = picks[1000:]
    assert steady.count(1) / len(steady) > 0.9, {n: steady.count(n) for n in (1, 2, 3, 4)}


def test_runs_a_coarse_clock_reads_as_zero_seconds_do_not_break_the_choice() -> None:
    from zoo.serve.batching import RowCosts

    costs = RowCosts(4)
    for rows, seconds in [(4, 0.0), (3, 0.0156), (2, 0.0), (1, 0.0), (1, 0.0156), (2, 0.0156), (4, 0.0)]:
        costs.observe(rows, seconds)  # a zero first, then as the reference, then rescaled to: no ZeroDivisionError
    assert costs.goal() in (1, 2, 3, 4) and 1 <= costs.rows_to_take(8) <= 4
    assert all(v >= 0 for v in costs.snapshot().values()) and set(costs.snapshot()) == {1, 2, 3, 4}


def test_fill_batches_always_takes_up_to_max_batch() -> None:
    from zoo.serve.batching import RowCosts

    fill = RowCosts(4, adapt=False)
    fill.observe(1, 0.001)
    fill.observe(4, 0.040)  # 10x dearer per row, still taken
    assert fill.goal() == 4
    assert [fill.rows_to_take(n) for n in (1, 3, 9)] == [1, 3, 4]


def test_workers_measure_their_runs_and_choose_by_them() -> None:
    """Through real lanes: a run's thread CPU time is what is learned, and singles win where batches cost more."""
    import asyncio

    from zoo.serve.batching import Batcher, Lanes

    groups: list[int] = []

    def run(items: list[int]) -> list[int]:  # CPU work per row grows with the batch: batching never pays
        groups.append(len(items))
        end = time.thread_time() + 0.002 * len(items) ** 2
        while time.thread_time() < end:
            pass
        return items

    async def scenario() -> dict[int, float]:
        lanes = Lanes(1, max_delay=0.0)
        batcher: Batcher[int, int] = Batcher(run, max_batch=4, lanes=lanes)
        for _ in range(6):  # 8 at a time: the queue always holds more than one run could take
            assert await asyncio.gather(*(batcher.submit("k", i) for i in range(8))) == list(range(8))
        await batcher.close()
        lanes.close()
        return batcher.costs.snapshot()

    measured = asyncio.run(scenario())
    assert set(measured) == {1, 2, 3, 4}  # every size was tried
    assert measured[4] > 3 * measured[1]  # thread CPU per row: 4 rows cost 4x per row here
    tried = next(i for i in range(len(groups)) if {1, 2, 3, 4} <= set(groups[:i + 1]))
    after = groups[tried + 1:]
    assert after and after.count(1) >= len(after) - 2, groups  # singles from then on, but for a rare exploration


def test_a_group_that_has_the_lanes_alone_goes_to_run_alone_and_is_not_timed() -> None:
    """One client at a time: its run takes the session of every core's threads; runs that overlap do not."""
    import asyncio

    from zoo.serve.batching import Batcher, Lanes

    alone_groups: list[list[int]] = []
    shared_groups: list[list[int]] = []
    gate = threading.Event()

    def run(items: list[int]) -> list[int]:
        shared_groups.append(list(items))
        return [i * 10 for i in items]

    def run_alone(items: list[int]) -> list[int]:
        alone_groups.append(list(items))
        gate.wait(10)
        return [i * 10 for i in items]

    async def scenario() -> tuple[list[int], dict[int, float], int]:
        lanes = Lanes(2, max_delay=0.5)
        batcher: Batcher[int, int] = Batcher(run, max_batch=8, lanes=lanes, run_alone=run_alone)
        first = asyncio.ensure_future(batcher.submit("k", 1))  # nothing else in flight: alone
        await asyncio.sleep(0.05)
        second = await asyncio.wait_for(batcher.submit("k", 2), 5)  # beside the run of 1: the shared session
        gate.set()
        answers = [await first, second]
        while not batcher.idle():  # the lane that ran 1 counts it done just after answering it
            await asyncio.sleep(0.01)
        answers.append(await batcher.submit("k", 3))  # alone again
        await batcher.close()
        lanes.close()
        return answers, batcher.costs.snapshot(), lanes.runs_alone

    answers, costs, runs_alone = asyncio.run(scenario())
    assert answers == [10, 20, 30]
    assert alone_groups == [[1], [3]] and shared_groups == [[2]] and runs_alone == 2
    assert list(costs) == [1]  # only the shared run was timed: a lone run's threads are not the lanes'


def test_under_load_a_moment_of_idle_lanes_does_not_start_a_wide_run() -> None:
    """Runs that kept overlapping: the next one stays on the shared session, though it finds the lanes idle."""
    import asyncio

    from zoo.serve.batching import Batcher, Lanes

    went: list[str] = []

    def run(items: list[int]) -> list[int]:
        went.append("shared")
        time.sleep(0.03)
        return items

    def run_alone(items: list[int]) -> list[int]:
        went.append("alone")
        time.sleep(0.03)  # as long as a shared run: the other of a pair is taken while it lasts
        return items

    async def scenario() -> list[str]:
        lanes = Lanes(2, max_delay=0.0)
        batcher: Batcher[int, int] = Batcher(run, max_batch=1, lanes=lanes, run_alone=run_alone)
        assert await batcher.submit("k", 0) == 0  # a first client alone: the wide session
        for i in range(12):  # then two clients at a time: every other run starts beside another
            assert await asyncio.gather(batcher.submit("k", i), batcher.submit("k", i)) == [i, i]
        while not batcher.idle():
            await asyncio.sleep(0.01)
        went.append("|")
        assert await batcher.submit("k", 99) == 99  # the lanes are idle, but load has been the rule
        await batcher.close()
        lanes.close()
        return went

    went = asyncio.run(scenario())
    assert went[0] == "alone"
    assert went[-2:] == ["|", "shared"], went


def test_lone_runs_get_the_threads_all_runs_in_flight_would_use() -> None:
    from zoo.serve.models import PoolConfig, cpu_cores

    cores = cpu_cores()
    assert PoolConfig(slots=2, threads=1).lone_threads == (2 if cores >= 2 else None)
    assert PoolConfig(slots=64, threads=1).lone_threads == (cores if cores > 1 else None)  # at most the cores
    assert PoolConfig(slots=1).lone_threads is None  # one run in flight: it has them all already
    assert PoolConfig(slots=2, threads=cores).lone_threads is None  # one run uses every core already


def test_the_pool_gives_small_cpu_models_a_session_for_lone_runs(tmp_path: Path, isolated_env: Path) -> None:
    import numpy as np

    from zoo.serve.metrics import Metrics
    from zoo.serve.models import ModelPool, PoolConfig, Served, cpu_cores

    if cpu_cores() < 2:
        pytest.skip("a lone run gets more threads than a shared one only with 2 cores or more; this process has 1")
    path = gather_model(tmp_path / "gather.onnx")
    with ThreadPoolExecutor(1) as loader:
        config = PoolConfig(slots=2, threads=1)
        model, lone = ModelPool(config, loader=loader, metrics=Metrics())._load_model(f"file:{path}")
        too_big = PoolConfig(slots=2, threads=1, lone_max_bytes=path.stat().st_size - 1)
        _, none = ModelPool(too_big, loader=loader, metrics=Metrics())._load_model(f"file:{path}")
    assert lone is not None and none is None  # the memory of a second session: small files only
    assert model.session.get_session_options().intra_op_num_threads == 1
    assert lone.session.get_session_options().intra_op_num_threads == 2
    served = Served(f"file:{path}", model, config=config, metrics=Metrics(), pinned=False, lone=lone)
    try:
        assert served.to_dict()["lone_run_threads"] == 2
        ids = {"ids": np.array([[3]], np.int64)}
        assert served.tensors.run_alone is not None and served.images.run_alone is not None
        assert served.tensors.run_alone([ids])[0]["rows"].tolist() == served.tensors.run([ids])[0]["rows"].tolist()
    finally:
        served.lanes.close()


def test_a_lone_session_that_fails_to_load_leaves_the_model_served(tmp_path: Path, isolated_env: Path,
                                                                     monkeypatch: pytest.MonkeyPatch,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    from zoo import api
    from zoo.serve.metrics import Metrics
    from zoo.serve.models import ModelPool, PoolConfig, cpu_cores

    if cpu_cores() < 2:
        pytest.skip("lone runs get a session of their own only with 2 cores or more; this process has 1")
    path = gather_model(tmp_path / "gather.onnx")
    real_load = api.load

    def load(target: object, **kwargs: Any) -> Any:
        if kwargs.get("threads") == 2:  # the lone runs' session: as if memory ran out
            raise MemoryError("out of memory")
        return real_load(target, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(api, "load", load)
    with ThreadPoolExecutor(1) as loader:
        model, lone = ModelPool(PoolConfig(slots=2, threads=1), loader=loader,
                                metrics=Metrics())._load_model(f"file:{path}")
    assert lone is None and model.session.get_session_options().intra_op_num_threads == 1
    assert "gather.onnx: no session for lone runs (out of memory); every run uses 1 thread(s)" in caplog.text


def test_served_models_learn_run_sizes_unless_told_to_fill(tmp_path: Path, isolated_env: Path) -> None:
    import zoo
    from zoo.serve.metrics import Metrics
    from zoo.serve.models import PoolConfig, Served

    model = zoo.load(gather_model(tmp_path / "gather.onnx"), threads=1)
    assert model.report.primary == "CPUExecutionProvider"
    learning = Served("file:gather", model, config=PoolConfig(), metrics=Metrics(), pinned=False)
    filling = Served("file:gather", model, config=PoolConfig(adapt_batch=False), metrics=Metrics(), pinned=False)
    assert learning.tensors.costs.adapt and learning.images.costs.adapt
    assert not filling.tensors.costs.adapt and not filling.images.costs.adapt
    assert learning.to_dict()["run_ms_per_row"] == {}  # nothing run yet: nothing measured
    learning.tensors.costs.observe(1, 0.003)
    assert learning.to_dict()["run_ms_per_row"] == {"tensors": {"1": 3.0}}

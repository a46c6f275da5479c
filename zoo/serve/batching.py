"""The dynamic batcher: requests that arrive close together share one session run.

A model's session runs happen on its lanes: a few worker threads of its own (as many
as runs may be in flight), which take their work from the queues themselves. The event
loop only queues a request and, when its run is over, answers it; inference never runs
on the loop, and a worker that finishes a run takes the next group at once, without a
round trip through the loop, so that under load the cores never wait for it.

Each item is queued on a batcher (one per kind of request of a model: images, raw
tensors) under a key (items with equal keys may run together: same trailing shape,
same decode options) and a weight (how many batch rows it brings). A free worker takes
the oldest key's queue, up to `max_batch` rows, once it is full, its first item has
waited `max_delay`, or nothing else is on its way: while requests are still being
prepared (decoded, parsed) in other threads, it waits for them up to `max_delay`, and
when none is, it runs at once, so a lone request pays no delay. Under load the queues
fill while the workers are busy, and batches grow without waiting at all.

How many rows a run takes is learned (RowCosts): whether batching pays depends on the CPU
and the model, and zoo measures it on the runs themselves instead of assuming it does.

A group that runs alone may go to the batcher's `run_alone` instead: zoo serve's runs there
use a session of every core's threads, so that one client at a time does not leave all but one
core idle. Alone means no other run in progress, nothing left queued or on its way, and runs
that mostly started alone of late: under load the lanes also find themselves idle for a moment
now and then, and a wide run started then would take the cores the next arrivals need. On 2
cores (mobilenetv2-12-int8) every run of 1 client went alone, and 2 of about 1,600 runs of 8.

When the runs fill the cores one intra-op thread each, each worker keeps to a core of its
own. Left to the scheduler, the two workers of a 2-core machine, woken from the same event
loop, were stacked on one core for up to 10 ms at a time while the other idled (perf sched:
6-10 % of the cores idle under load); pinned, they never share one.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_ONE_QUEUE = "one queue"  # the key of every item of a batcher whose runs take one item each
OVERLAP_ALPHA = 0.1  # the weight of a new run in Lanes' moving average of the runs in progress
WORKER_NICE = 1  # how far below the event loop the workers run (see give_way_to_the_loop)
ALONE_BELOW = 1.25  # a run goes to run_alone only while that average is under this: 3 in 4 runs started alone


def give_way_to_the_loop() -> None:
    """Run this worker thread at WORKER_NICE above the process's main thread, on Linux (where nice is per thread).

    The event loop that reads the bodies and answers the runs then gets a core sooner when it
    wakes, instead of waiting behind the runs it feeds. On 2 cores (mobilenetv2-12-int8, 8
    clients, interleaved windows) nice 1 gave 4-5 % more requests/s in two A/Bs and session
    runs 4 % less CPU per request; at 32 clients it was even (+3 %, -1.5 %), where nice 3 cost
    up to 7 %. Elsewhere setpriority would renice the whole process: nothing changes there.
    """
    if not sys.platform.startswith("linux"):
        return
    with suppress(OSError):  # a sandbox that forbids it: the default priority stands
        base = os.getpriority(os.PRIO_PROCESS, os.getpid())  # the main thread's (its tid is the pid)
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), min(19, base + WORKER_NICE))


@dataclass(slots=True)
class _Job(Generic[T, R]):
    item: T
    weight: int
    future: asyncio.Future[R]
    loop: asyncio.AbstractEventLoop
    queued: float = field(default_factory=time.monotonic)


class RowCosts:
    """Which run size (rows) to take: the smallest that costs this machine about the least CPU per row.

    A run's cost is its worker thread's CPU time (time.thread_time: what the run itself used,
    not the time it lost to other threads on its core), divided by its rows. A worker takes
    the smallest size the queue can fill whose cost is within SLACK of the cheapest. Two
    exceptions keep the figures true: a size not yet measured is tried first (so the first runs
    under load fill up to `max_batch`, as a plain batcher would), and every EXPLORE-th choice
    takes another size in turn, so that a size once slower is measured again.

    The figures are relative. The size runs take now (the reference) keeps a moving average
    of its cost, over the many runs it makes; every run of another size is compared with that
    average as it stands at the time, and those ratios are averaged per size. A shared machine
    changes speed by a third within seconds (2 cores of an AMD EPYC VM), and a size run 1 time
    in 100 would otherwise be judged by figures from another second than the reference's: on
    absolute figures, with all sizes costing the same, the choice flipped to batches for a quarter
    of the runs. When another size becomes the choice, it becomes the reference and the ratios are
    rescaled to it.

    Why the smallest within SLACK, not the cheapest: a bigger run makes each of its requests
    wait for all its rows, and takes from the queue what the other runs in flight would have
    run next: at 8 clients on 2 lanes, batches of 4 hold every request, and a lane that ends
    finds nothing queued while the answers go out and the next bodies come in. Its CPU per row
    does not show that. On 2 cores (mobilenetv2-12-int8, 8 clients) batches of 2-4 cost 2-7 %
    less CPU per row than singles (AMD EPYC, Zen 5; about 4 % on an Intel Xeon with AMX), yet
    zoo serve answered 5-12 % more requests per second in singles. `adapt=False` always fills
    up to `max_batch` (zoo serve --fill-batches, and runs on a GPU).
    """

    EXPLORE = 32  # one choice in this many measures another size
    ALPHA = 0.25  # the weight of a new run in the reference size's moving average
    RATIO_ALPHA = 0.1  # the weight of a new run in another size's average ratio to the reference
    SLACK = 0.10  # a bigger run must save more than this share of CPU per row

    __slots__ = ("_level", "_ratio", "_reference", "_turn", "adapt", "max_batch")

    def __init__(self, max_batch: int, *, adapt: bool = True) -> None:
        self.max_batch, self.adapt = max(1, max_batch), adapt
        self._reference: int | None = None  # the size whose cost the others are measured against
        self._level = 0.0  # the reference's CPU seconds per row, a moving average
        self._ratio: dict[int, float] = {}  # rows -> CPU per row / the reference's (the reference: 1)
        self._turn = 0

    def goal(self) -> int:
        """The rows a run should wait for: the size chosen from all measured (`max_batch` until one is)."""
        if not self.adapt or self._reference is None:
            return self.max_batch
        return self._reference

    def _choose(self, sizes: Sequence[int]) -> int:
        """The smallest of these measured sizes whose cost per row is within SLACK of the cheapest's."""
        limit = min(self._ratio[n] for n in sizes) * (1 + self.SLACK)
        return next(n for n in sizes if self._ratio[n] <= limit)

    def rows_to_take(self, queued: int) -> int:
        """How many of `queued` rows the next run takes."""
        top = min(queued, self.max_batch)
        if not self.adapt or top <= 1:
            return max(1, top)
        untried = [n for n in range(top, 0, -1) if n not in self._ratio]
        if untried:
            return untried[0]
        best = self._choose(range(1, top + 1))
        self._turn += 1
        if self._turn % self.EXPLORE:
            return best
        others = [n for n in range(1, top + 1) if n != best]
        return others[(self._turn // self.EXPLORE) % len(others)]

    def observe(self, rows: int, seconds: float) -> None:
        """Count one run of `rows` rows that cost `seconds` of its thread's CPU."""
        if not 1 <= rows <= self.max_batch or seconds < 0:  # one request's own rows past max_batch: not a choice
            return
        # A clock coarser than a run (thread_time ticks every 15.6 ms on Windows) reads 0: kept above 0,
        # so that a ratio to it, or a rescale by it, never divides by zero.
        per_row = max(seconds / rows, 1e-9)
        if self._reference is None:
            self._reference, self._level, self._ratio[rows] = rows, per_row, 1.0
        elif rows == self._reference:
            self._level += self.ALPHA * (per_row - self._level)
        else:
            ratio, old = per_row / self._level, self._ratio.get(rows)
            self._ratio[rows] = ratio if old is None else old + self.RATIO_ALPHA * (ratio - old)
        best = self._choose(sorted(self._ratio))
        if best != self._reference:  # the choice moved: measure against it from now on
            scale = self._ratio[best]
            self._ratio = {n: r / scale for n, r in self._ratio.items()}
            self._level *= scale
            self._reference = best

    def snapshot(self) -> dict[int, float]:
        """CPU seconds per row by run size: the reference's moving average, scaled by each size's ratio to it."""
        return {n: self._level * self._ratio[n] for n in sorted(self._ratio)}


class Lanes:
    """`workers` threads running the groups that one model's batchers queue: its runs in flight.

    A worker keeps its place until its run ends, even when every client of the group went
    away meanwhile: the bound on runs in flight is a bound on the cores they use.
    """

    def __init__(self, workers: int, *, max_delay: float, name: str = "zoo-run", cores: Sequence[int] = ()) -> None:
        self.workers, self.max_delay, self.name = max(1, workers), max(0.0, max_delay), name
        self.cores = tuple(cores)  # a worker runs on the one of these fewest others do; empty: anywhere
        self._on_core = dict.fromkeys(self.cores, 0)  # workers alive on each
        self._cond = threading.Condition(threading.Lock())
        self._queues: dict[tuple[Batcher[Any, Any], Hashable], deque[_Job[Any, Any]]] = {}
        self._closed = False
        self._alive = 0
        self._running = 0  # runs in progress on these lanes, of any of their batchers
        self._overlap = 1.0  # moving average of the runs in progress as each run starts, itself included
        self.runs_alone = 0  # runs that went to their batcher's run_alone
        with self._cond:
            self._spawn()

    def close(self) -> None:
        """Let the workers go once nothing is queued; an item queued later brings them back until it is run."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def alive(self) -> int:
        """Worker threads running now."""
        return self._alive

    def _spawn(self) -> None:  # holding the lock
        while self._alive < self.workers:
            self._alive += 1
            core = min(self.cores, key=self._on_core.__getitem__) if self.cores else None
            if core is not None:
                self._on_core[core] += 1
            threading.Thread(target=self._work, args=(core,), name=f"{self.name}-{self._alive}", daemon=True).start()

    def _put(self, batcher: Batcher[Any, Any], key: Hashable, job: _Job[Any, Any]) -> None:
        with self._cond:
            if self._closed:  # a request that held the model as it was unloaded: served all the same,
                self._spawn()  # by workers that leave again once nothing is queued
            self._queues.setdefault((batcher, key), deque()).append(job)
            batcher._depth += 1
            self._cond.notify()
        if batcher.on_depth is not None:
            batcher.on_depth(+1)

    def _work(self, core: int | None) -> None:
        if core is not None:
            with suppress(OSError):  # a core taken away since (cpuset): run anywhere
                os.sched_setaffinity(0, {core})  # 0: this thread
        give_way_to_the_loop()
        done: Batcher[Any, Any] | None = None
        cost: tuple[int, float] | None = None
        while True:
            with self._cond:
                if done is not None:
                    done._running -= 1
                    self._running -= 1
                    if cost is not None:
                        done.costs.observe(*cost)
                group = self._next_group()
                if group is None:
                    self._alive -= 1
                    if core is not None:
                        self._on_core[core] -= 1
                    return
            done, jobs, alone = group
            cost = _run_group(done, jobs, alone)

    def _next_group(self) -> tuple[Batcher[Any, Any], list[_Job[Any, Any]], bool] | None:
        """Wait (holding the lock) for a group that is due; None once closed with nothing queued.

        The group comes with whether it runs alone: no other run in progress, nothing left
        queued or on its way, and the runs of late mostly started alone (see the module docstring).
        """
        while True:
            if not self._queues:
                if self._closed:
                    return None
                self._cond.wait()
                continue
            key = min(self._queues, key=lambda k: self._queues[k][0].queued)
            queue, batcher = self._queues[key], key[0]
            wait = queue[0].queued + self.max_delay - time.monotonic()
            queued = sum(j.weight for j in queue)
            if wait <= 0 or batcher._arriving == 0 or queued >= batcher.costs.goal():
                jobs = self._take(key, batcher.costs.rows_to_take(queued))
                if jobs:
                    batcher._running += 1
                    self._running += 1
                    self._overlap += OVERLAP_ALPHA * (self._running - self._overlap)
                    alone = (self._running == 1 and not self._queues and batcher._arriving == 0
                             and self._overlap < ALONE_BELOW)
                    self.runs_alone += alone and batcher.run_alone is not None
                    return batcher, jobs, alone
                continue
            self._cond.wait(wait)

    def _take(self, key: tuple[Batcher[Any, Any], Hashable], limit: int) -> list[_Job[Any, Any]]:
        """The oldest jobs of a queue, up to `limit` rows (at least one job)."""
        queue, batcher, rows = self._queues[key], key[0], 0
        jobs: list[_Job[Any, Any]] = []
        while queue and (not jobs or rows + queue[0].weight <= limit):
            job = queue.popleft()
            batcher._depth -= 1
            if batcher.on_depth is not None:
                batcher.on_depth(-1)
            if job.future.done():  # its client went away while it waited
                continue
            jobs.append(job)
            rows += job.weight
        if not queue:
            del self._queues[key]
        return jobs


def _run_group(batcher: Batcher[Any, Any], jobs: list[_Job[Any, Any]], alone: bool) -> tuple[int, float] | None:
    """Run one group in this worker thread and hand the answers to the loop: one wake-up per run.

    A group that runs alone goes to the batcher's `run_alone` where it has one. Returns the rows
    and CPU seconds (this thread's) of a `run` that succeeded, else None: a run alone uses other
    threads too, and is no measure of what the sizes cost when runs overlap.
    """
    rows = sum(j.weight for j in jobs)
    cost: tuple[int, float] | None = None
    try:
        if batcher.on_batch is not None:
            batcher.on_batch(rows)
        items = [j.item for j in jobs]
        failure: BaseException | None = None
        if alone and batcher.run_alone is not None:
            results: Sequence[Any] | None = batcher.run_alone(items)
        else:
            started = time.thread_time()
            results = batcher.run(items)
            cost = rows, time.thread_time() - started
    except BaseException as exc:  # the run failed: every request of the group gets the reason; the worker lives on
        results, failure = None, exc
    with suppress(RuntimeError):  # the loop is closed: the server stopped, nobody to answer
        jobs[0].loop.call_soon_threadsafe(_answer, jobs, results, failure)
    return cost


def _answer(jobs: list[_Job[Any, Any]], results: Sequence[Any] | None, failure: BaseException | None) -> None:
    for i, job in enumerate(jobs):
        if job.future.done():  # cancelled meanwhile: its client went away
            continue
        result = failure if failure is not None else results[i]  # type: ignore[index]
        if isinstance(result, BaseException):  # the group's failure, or this item's own (run() may give either)
            job.future.set_exception(result)
        else:
            job.future.set_result(result)


class Batcher(Generic[T, R]):
    """Queue items by key; the lanes run groups of up to `max_batch` rows through `run`.

    `run` takes the items of one group and returns one result per item, in order; an exception
    in place of a result fails that item alone, one raised fails the group. The batchers of one
    model share its lanes, so their runs in flight are bounded together. `run_alone`, where given,
    does the same for a group that runs alone on the lanes (see the module docstring).
    """

    def __init__(self, run: Callable[[list[T]], Sequence[R | BaseException]], *, max_batch: int, lanes: Lanes,
                 on_batch: Callable[[int], None] | None = None,
                 on_depth: Callable[[int], None] | None = None, adapt: bool = True,
                 run_alone: Callable[[list[T]], Sequence[R | BaseException]] | None = None) -> None:
        self.run, self.run_alone, self.max_batch, self.lanes = run, run_alone, max(1, max_batch), lanes
        self.costs = RowCosts(self.max_batch, adapt=adapt)  # read and changed under the lanes' lock
        self.on_batch, self.on_depth = on_batch, on_depth
        # Changed under the lanes' lock only: the workers read them.
        self._arriving = 0
        self._depth = 0
        self._running = 0

    @contextmanager
    def arriving(self) -> Iterator[None]:
        """Count a request that is being prepared and will be submitted: a free worker waits for it.

        Leave the block and call submit() right away: a worker that looks in between runs
        without the item, which then goes in the next group.
        """
        cond = self.lanes._cond
        with cond:
            self._arriving += 1
        try:
            yield
        finally:
            with cond:
                self._arriving -= 1
                cond.notify_all()

    async def submit(self, key: Hashable, item: T, weight: int = 1) -> R:
        """Queue `item` and wait for its result (the run's exception, if the run fails).

        With `max_batch` 1 nothing shares a run, so every item goes in one queue, whatever its key:
        first come, first run, as across keys, and a worker's pick stays one look however many wait.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self.lanes._put(self, _ONE_QUEUE if self.max_batch == 1 else key, _Job(item, max(1, weight), future, loop))
        return await future

    @property
    def depth(self) -> int:
        """Items queued and not yet taken by a worker."""
        return self._depth

    def idle(self) -> bool:
        return self._depth == 0 and self._running == 0 and self._arriving == 0

    async def close(self) -> None:
        """Wait until nothing is queued, running or on its way."""
        while not self.idle():
            await asyncio.sleep(0.01)

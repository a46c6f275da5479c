"""The dynamic batcher: requests that arrive close together share one session run.

Each item is queued under a key (items with equal keys may run together: same model,
same trailing shape, same decode options) and a weight (how many batch rows it brings).
One dispatcher task per batcher waits for a free run slot, then for the oldest key's
queue to fill up to `max_batch` rows or for its first item to have waited `max_delay`,
and hands the group to a worker thread: inference never runs on the event loop.

While requests are still being prepared (decoded, parsed) in worker threads, the
dispatcher waits for them up to `max_delay`; when none is on its way it runs at once,
so a lone request pays no delay and a busy server still batches. Under load the
queue fills while the slots are busy, and batches grow without waiting at all.
A request that finds a slot free, nothing queued and nothing on its way skips the
queue and the dispatcher altogether, saving their two task hand-offs.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterator, Sequence
from concurrent.futures import Executor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass(slots=True)
class _Job(Generic[T, R]):
    item: T
    weight: int
    future: asyncio.Future[R]
    queued: float = field(default_factory=time.monotonic)


class Batcher(Generic[T, R]):
    """Queue items by key; run groups of up to `max_batch` rows through `run` in `executor`.

    `run` takes the items of one group and returns one result per item, in order.
    `slots` is shared by the batchers of one model: it bounds the session runs in flight.
    """

    def __init__(self, run: Callable[[list[T]], Sequence[R]], *, max_batch: int, max_delay: float,
                 slots: asyncio.Semaphore, executor: Executor,
                 on_batch: Callable[[int], None] | None = None,
                 on_depth: Callable[[int], None] | None = None) -> None:
        self.run, self.max_batch, self.max_delay = run, max(1, max_batch), max(0.0, max_delay)
        self.slots, self.executor, self.on_batch, self.on_depth = slots, executor, on_batch, on_depth
        self._queues: dict[Hashable, deque[_Job[T, R]]] = {}
        self._wakeup = asyncio.Event()
        self._arriving = 0
        self._depth = 0
        self._task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._alone = 0  # runs started by _run_alone and not yet finished

    @contextmanager
    def arriving(self) -> Iterator[None]:
        """Count a request that is being prepared and will be submitted: the dispatcher waits for it.

        Leave the block and call submit() with no await in between (the decrement and the
        enqueue then happen in one step of the event loop).
        """
        self._arriving += 1
        try:
            yield
        finally:
            self._arriving -= 1
            self._wakeup.set()

    async def submit(self, key: Hashable, item: T, weight: int = 1) -> R:
        """Queue `item` and wait for its result (the run's exception, if the run fails)."""
        if not self._queues and self._arriving == 0 and not self.slots.locked():
            return await self._run_alone(item, weight)
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queues.setdefault(key, deque()).append(_Job(item, max(1, weight), future))
        self._set_depth(+1)
        self._wakeup.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._dispatch())
        return await future

    @property
    def depth(self) -> int:
        """Items queued and not yet handed to a run."""
        return self._depth

    def idle(self) -> bool:
        return not self._queues and not self._running and self._arriving == 0 and self._alone == 0

    async def close(self) -> None:
        """Stop the dispatcher once nothing is queued or running (a later submit starts it again)."""
        while not self.idle():
            await asyncio.sleep(0.01)
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _dispatch(self) -> None:
        while self._queues:
            await self.slots.acquire()
            try:
                key = await self._fill()
                jobs = self._take(key) if key is not None else []
            except BaseException:
                self.slots.release()
                raise
            if not jobs:
                self.slots.release()
                continue
            task = asyncio.create_task(self._run(jobs))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _fill(self) -> Hashable | None:
        """The oldest key, once its group is full, its first item is due, or nothing else is coming."""
        while True:
            if not self._queues:
                return None
            key = min(self._queues, key=lambda k: self._queues[k][0].queued)
            queue = self._queues[key]
            wait = queue[0].queued + self.max_delay - time.monotonic()
            if sum(j.weight for j in queue) >= self.max_batch or wait <= 0 or self._arriving == 0:
                return key
            self._wakeup.clear()
            with suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), wait)

    def _take(self, key: Hashable) -> list[_Job[T, R]]:
        queue, rows = self._queues[key], 0
        jobs: list[_Job[T, R]] = []
        while queue and (not jobs or rows + queue[0].weight <= self.max_batch):
            job = queue.popleft()
            self._set_depth(-1)
            if job.future.done():  # its client went away while it waited
                continue
            jobs.append(job)
            rows += job.weight
        if not queue:
            del self._queues[key]
        return jobs

    async def _run(self, jobs: list[_Job[T, R]]) -> None:
        try:
            if self.on_batch is not None:
                self.on_batch(sum(j.weight for j in jobs))
            loop = asyncio.get_running_loop()
            results = await loop.run_in_executor(self.executor, self.run, [j.item for j in jobs])
        except Exception as exc:  # the run failed: every request of the group gets the reason
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(exc)
        else:
            for job, result in zip(jobs, results):
                if not job.future.done():
                    job.future.set_result(result)
        finally:
            self.slots.release()

    async def _run_alone(self, item: T, weight: int) -> R:
        """Run one item at once: a run slot is free and nothing waits, so the dispatcher would do the same.

        The slot is given back when the run ends, not when the request does: a client that goes
        away mid-run must not let another run start beside this one.
        """
        await self.slots.acquire()  # free (checked above, with no await since): returns at once
        loop = asyncio.get_running_loop()
        try:
            if self.on_batch is not None:
                self.on_batch(weight)
            running = self.executor.submit(self.run, [item])
        except BaseException:
            self.slots.release()
            raise
        self._alone += 1

        def finished(_: object) -> None:
            with suppress(RuntimeError):  # the loop is closed: the server stopped, no slot to give back
                loop.call_soon_threadsafe(self._release)

        running.add_done_callback(finished)
        return (await asyncio.wrap_future(running, loop=loop))[0]

    def _release(self) -> None:
        self._alone -= 1
        self.slots.release()
        if self._queues:  # items queued while this run held the slot: the dispatcher takes them now
            self._wakeup.set()

    def _set_depth(self, change: int) -> None:
        self._depth += change
        if self.on_depth is not None:
            self.on_depth(change)

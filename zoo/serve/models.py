"""The pool of loaded models: load once, keep warm for the keep-alive period, unload least-recently-used.

A name is resolved to its key (the zoo id, or the local file named at start-up) before
anything loads, so an unknown name costs nothing. Concurrent first requests for one
model share one load. A failed load answers 500 with the reason and leaves nothing
behind: the next request tries again. Models named at start-up or loaded through the
repository API are pinned (kept until unloaded explicitly); the others are unloaded
after `keep_alive` seconds without a request, and the least recently used idle ones
beyond `max_loaded`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import re
import time
from collections.abc import Coroutine, Iterator
from concurrent.futures import Executor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from zoo.counts import count_of
from zoo.errors import OpsetError
from zoo.filecheck import looks_like_path
from zoo.model import Model
from zoo.printable import clipped
from zoo.serve import oip
from zoo.serve.batching import Batcher, Lanes
from zoo.serve.errors import LoadError, RequestError
from zoo.serve.metrics import Metrics

if TYPE_CHECKING:
    from zoo.prediction import Prediction

log = logging.getLogger("zoo.serve")
Feeds = dict[str, np.ndarray]
# A name's resolution (compiled index, manifest scan: about 1 ms) is remembered this long. A manifest
# added or removed while the server runs is seen after at most this delay.
NAME_TTL = 10.0  # seconds
PLANS_KEPT = 256  # infer requests' JSON headers remembered per model, with their checks' outcome


@dataclass(frozen=True, slots=True)
class PoolConfig:
    """How models are loaded, batched and kept."""

    # Measured on 2 cores (mobilenetv2-12-int8, 32 clients): batches of up to 16 rows ran 0.77x a plain
    # unbatched server, up to 4 rows 1.09x (4 interleaved windows each; bigger batches likely outgrow the caches).
    max_batch: int = 4
    adapt_batch: bool = True  # each run takes the measured cheapest size up to max_batch (batching.RowCosts)
    max_delay: float = 0.002  # seconds
    keep_alive: float | None = 300.0  # seconds after the last request; None: forever
    max_loaded: int = 4
    slots: int = 2  # session runs in flight per model: two overlap one run's serial parts on a CPU
    threads: int | None = None  # intra-op threads per run; None: the cores shared out among the slots
    providers: str | None = None
    # A model file up to this size also gets a session for the runs that have the cores alone (lone_threads):
    # the memory of a second copy of its weights. 0: never.
    lone_max_bytes: int = 256 << 20

    @property
    def run_threads(self) -> int:
        """Intra-op threads per session run, so that `slots` runs in flight never oversubscribe the cores.

        Measured on 2 cores (mobilenetv2-12-int8): 2 runs of 1 thread each cost about 10 % less CPU
        per image than runs of 2 threads each, whose thread-pool hand-offs (sleeping, not spinning,
        so that the event loop keeps a core) are pure overhead when every core is already busy.
        """
        if self.threads is not None:
            return self.threads
        return max(1, cpu_cores() // max(1, self.slots))

    @property
    def lone_threads(self) -> int | None:
        """Intra-op threads for a run that has the cores alone: what all the runs in flight would use
        (`slots` x run_threads, at most the cores); None where that is no more than one run's.

        With 2 runs of 1 thread on 2 cores, one client at a time left a core idle. A 2-thread session for
        the lone runs (AMD EPYC, 2 cores, 1 client, 8 interleaved windows each): mobilenetv2-12-int8 225 ->
        264 requests/s, p50 4.41 -> 3.69 ms (a plain server with 2-thread sessions: 285, 3.52 ms);
        shufflenet-v2-12-int8 200 -> 212, p50 5.03 -> 4.73 ms. At 8 clients the runs stay on the lanes'
        sessions (batching.Lanes: 2 of about 1,600 runs went alone): 535 against 564 requests/s, noise.
        """
        budget = min(self.run_threads * max(1, self.slots), cpu_cores())
        return budget if budget > self.run_threads else None

    @property
    def lane_cores(self) -> tuple[int, ...]:
        """The cores the runs keep to, one each, when they fill the cores one thread each (else none: anywhere)."""
        cores = usable_cores()
        if self.run_threads != 1 or self.slots < 2 or self.slots != len(cores):
            return ()
        return cores


@dataclass(frozen=True, slots=True)
class ImageJob:
    """One prepared image for the image endpoint, with its decode options (part of its batch key)."""

    name: str
    prepared: Any
    topk: int | None
    score_threshold: float | None


class Served:
    """One loaded model with its batchers (images, raw tensors) and its use."""

    def __init__(self, key: str, model: Model, *, config: PoolConfig, metrics: Metrics, pinned: bool,
                 lone: Model | None = None) -> None:
        self.key, self.model, self.pinned = key, model, pinned
        self.lone = lone  # the same model on a session of more threads, for the runs that have the cores alone
        self.loaded_at = self.last_used = time.time()
        self.in_flight = 0
        self.plans: dict[bytes, oip.Plan] = {}  # infer requests' JSON headers, checked (see remember)
        name = model.name
        # Shared: image and tensor runs count alike against the runs in flight.
        self.lanes = Lanes(config.slots, max_delay=config.max_delay, name=f"zoo-run-{name}", cores=config.lane_cores)
        batch_size, queue_depth = metrics.batch_size.labels(name), metrics.queue_depth.labels(name)
        # The run sizes are chosen by CPU time per row (batching.RowCosts): a measure of the CPU's work, not
        # of a GPU's, whose runs fill up to max_batch.
        adapt = config.adapt_batch and model.report.primary == "CPUExecutionProvider"
        common: dict[str, Any] = {"lanes": self.lanes, "on_batch": batch_size.observe, "on_depth": queue_depth.inc,
                                  "adapt": adapt}
        self.images: Batcher[ImageJob, Prediction] = Batcher(
            self._run_images, max_batch=min(config.max_batch, model.max_batch), **common,
            run_alone=None if lone is None else functools.partial(self._run_images, model=lone))
        self.tensors: Batcher[Feeds, Feeds] = Batcher(
            self._run_tensors, max_batch=config.max_batch if self.batchable else 1, **common,
            run_alone=None if lone is None else functools.partial(self._run_tensors, model=lone))

    @property
    def batchable(self) -> bool:
        """Raw tensors may be concatenated along axis 0: every input and output has a dynamic first axis."""
        metas = [*self.model.input_metas, *self.model.output_metas]
        return self.model.max_batch > 1 and all(m.shape and not _fixed(m.shape[0]) for m in metas)

    @contextmanager
    def use(self) -> Iterator[Served]:
        """Count a request in flight (an idle model is never unloaded under it)."""
        self.in_flight += 1
        try:
            yield self
        finally:
            self.in_flight -= 1
            self.last_used = time.time()

    def tensor_key(self, feeds: Feeds) -> tuple[object | None, int]:
        """The batch key and row count of a request's feeds; None for a request that cannot share a run."""
        rows = {a.shape[0] if a.ndim else -1 for a in feeds.values()}
        if not self.batchable or len(rows) != 1 or -1 in rows:
            return None, 1
        return tuple((n, a.dtype.str, a.shape[1:]) for n, a in sorted(feeds.items())), rows.pop()

    def remember(self, head: bytes, plan: oip.Plan) -> None:
        """Keep the plan of an infer request's JSON header (v2.answer_infer); the headers are the clients' to choose."""
        if len(self.plans) >= PLANS_KEPT:
            self.plans.clear()
        self.plans[head] = plan

    def to_dict(self) -> dict[str, Any]:
        now = time.time()
        costs = {kind: {str(rows): round(cost * 1000, 3) for rows, cost in batcher.costs.snapshot().items()}
                 for kind, batcher in (("images", self.images), ("tensors", self.tensors))}
        return {"name": self.model.name, "provider": self.model.report.primary, "task": self.model.task,
                "max_batch": self.images.max_batch if self.model.runner.kind == "image" else self.tensors.max_batch,
                "run_ms_per_row": {kind: cost for kind, cost in costs.items() if cost},  # what batching costs here
                "lone_run_threads": None if self.lone is None else _threads_of(self.lone),
                "runs_alone": self.lanes.runs_alone,
                "pinned": self.pinned, "in_flight": self.in_flight, "queued": self.images.depth + self.tensors.depth,
                "loaded_for_s": round(now - self.loaded_at, 1), "idle_for_s": round(now - self.last_used, 1)}

    async def close(self) -> None:
        await self.images.close()
        await self.tensors.close()
        self.lanes.close()

    def _run_images(self, jobs: list[ImageJob], model: Model | None = None) -> list[Prediction]:
        first = jobs[0]  # equal batch keys: equal options
        return (model or self.model).run_prepared([(j.name, j.prepared) for j in jobs], topk=first.topk,
                                                  score_threshold=first.score_threshold)

    def _run_tensors(self, group: list[Feeds], model: Model | None = None) -> list[Feeds | Exception]:
        """One result per request: its outputs, or (a run that fails on its input) its own error."""
        model = model or self.model
        if len(group) == 1:
            return [_run_one(model, group[0])]
        rows = [next(iter(feeds.values())).shape[0] for feeds in group]
        merged = {name: np.concatenate([feeds[name] for feeds in group]) for name in group[0]}
        try:
            outputs = {k: np.asarray(v) for k, v in model.run(merged, check=False).items()}
        except Exception:  # one request's values (token ids out of range ...) fail the shared run: each alone,
            return [_outcome(model, feeds) for feeds in group]  # so that only that request fails
        if any(v.shape[:1] != (sum(rows),) for v in outputs.values()):
            return [_outcome(model, feeds) for feeds in group]  # an output without the batch axis: one by one
        cuts = np.cumsum(rows)[:-1]
        parts = {name: np.split(value, cuts) for name, value in outputs.items()}
        return [{name: split[i] for name, split in parts.items()} for i in range(len(group))]


def _outcome(model: Model, feeds: Feeds) -> Feeds | Exception:
    try:
        return _run_one(model, feeds)
    except Exception as exc:
        return exc


def _run_one(model: Model, feeds: Feeds) -> Feeds:
    """Run one request's tensors; onnxruntime refusing them (they passed the graph's declared types and
    shapes, not its ops: a size its reshapes cannot take, an index out of range) is the client's 400."""
    try:
        return model.run(feeds, check=False)  # checked against the graph's inputs as they came in (oip.feeds_for)
    except Exception as exc:
        from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidArgument

        if not isinstance(exc, (Fail, InvalidArgument)):
            raise
        raise RequestError(f"onnxruntime cannot run {model.name} on this input: {_ort_reason(exc)}",
                           hint=f"check the input against GET /v2/models/{model.name}") from None


def _threads_of(model: Model) -> int:
    """The intra-op threads of a model's session."""
    return int(model.session.get_session_options().intra_op_num_threads)


def _ort_reason(exc: Exception) -> str:
    """onnxruntime's message without its codes: "Gather: indices element out of data bounds, idx=99 ..."."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    node = re.search(r"running (\w+) node", text)
    message = text.rpartition("Status Message: ")[2]
    return (f"{node.group(1)}: {message}" if node else message)[:500]


def cpu_cores() -> int:
    """How many cores this process may run on (its affinity mask, not the machine's count)."""
    return len(usable_cores()) or os.cpu_count() or 1


def usable_cores() -> tuple[int, ...]:
    """The cores this process may run on, in order; empty where the system does not say (not Linux)."""
    try:
        return tuple(sorted(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return ()


def _fixed(dim: object) -> bool:
    return isinstance(dim, int) and dim > 0


class ModelPool:
    """Loaded models by key; see the module docstring for the rules."""

    def __init__(self, config: PoolConfig, *, loader: Executor, metrics: Metrics,
                 files: dict[str, Path] | None = None) -> None:
        self.config, self.loader, self.metrics = config, loader, metrics
        self.files = dict(files or {})  # request name -> local file; only files named at start-up
        self._served: dict[str, Served] = {}
        self._names: dict[tuple[str, str | None], tuple[str, float]] = {}  # (name, version) -> (key, when)
        self._loading: dict[str, asyncio.Future[Served]] = {}
        self._tasks: set[asyncio.Task[None]] = set()  # loads and closes under way (the loop keeps weak refs only)

    def key_of(self, name: str, version: str | None = None) -> str:
        """The model a request names (its version is the opset): the zoo id, or file:PATH."""
        remembered = self._names.get((name, version))
        if remembered is not None and time.monotonic() - remembered[1] < NAME_TTL:
            return remembered[0]
        key = self._resolve(name, version)  # failures are not remembered: they raise
        if len(self._names) >= 1024:  # names are the clients' to choose: keep the memo bounded
            self._names.clear()
        self._names[(name, version)] = (key, time.monotonic())
        return key

    def _resolve(self, name: str, version: str | None) -> str:
        from zoo import api

        if name in self.files:
            return f"file:{self.files[name]}"
        if looks_like_path(name):
            raise RequestError(f"{name!r} is a file path, not a model name", status=404,
                               hint="the server loads local files only when they are named at start-up "
                                    "(zoo serve ./model.onnx)")
        opset = None
        if version not in (None, ""):
            opset = count_of(version)
            if opset is None:
                raise RequestError(f"model version {clipped(version)} is not a number", status=404,
                                   hint="a zoo model's versions are its opsets (GET /v2/models/NAME lists them)")
        try:
            return api.resolve(name, opset).id
        except OpsetError as exc:  # its hint names the CLI's --opset
            raise RequestError(exc.what, status=404, hint=f"a model's versions are its opsets: GET /v2/models/{name} "
                                                          "lists them, or leave /versions/... out") from None

    @property
    def served(self) -> list[Served]:
        return list(self._served.values())

    def loaded(self, key: str) -> Served | None:
        return self._served.get(key)

    async def get(self, key: str, *, pin: bool = False) -> Served:
        """The loaded model for `key`, loading it (once, however many ask at the same time)."""
        served = self._served.get(key)
        if served is None:
            pending = self._loading.get(key)
            if pending is None:
                pending = asyncio.get_running_loop().create_future()
                pending.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved: no warning
                self._loading[key] = pending
                self._spawn(self._load(key, pending))
            served = await asyncio.shield(pending)
        served.pinned = served.pinned or pin
        served.last_used = time.time()
        return served

    async def _load(self, key: str, pending: asyncio.Future[Served]) -> None:
        label = key.rpartition("/")[2] if key.startswith("file:") else key
        started = time.perf_counter()
        try:
            model, lone = await asyncio.get_running_loop().run_in_executor(self.loader, self._load_model, key)
        except Exception as exc:  # any failure, expected or not, is this model's, not the server's
            self.metrics.loads.labels(label, "error").inc()
            log.error("model %s failed to load: %s", label, exc, exc_info=not hasattr(exc, "what"))
            pending.set_exception(LoadError(label, exc))
        else:
            served = Served(key, model, config=self.config, metrics=self.metrics, pinned=False, lone=lone)
            self._served[key] = served
            self.metrics.loads.labels(model.name, "ok").inc()
            self.metrics.loaded.set(len(self._served))
            log.info("loaded %s on %s in %.2f s", model.name, model.report.primary, time.perf_counter() - started)
            pending.set_result(served)
            self._evict(keep=key)
        finally:
            del self._loading[key]

    def _load_model(self, key: str) -> tuple[Model, Model | None]:
        """The model on its session for overlapping runs, and on one for lone runs (PoolConfig.lone_threads)
        where it has one: a CPU run, a file up to lone_max_bytes. Both sleep rather than spin between runs:
        a spinning pool thread never slept between one client's requests (a core's worth of CPU each)."""
        from zoo import api

        target: str | Path = Path(key[5:]) if key.startswith("file:") else key
        model = api.load(target, providers=self.config.providers, threads=self.config.run_threads, spinning=False,
                         progress=False)
        lone_threads = self.config.lone_threads
        if (lone_threads is None or model.report.primary != "CPUExecutionProvider"  # a GPU run uses no CPU threads
                or os.path.getsize(model.path) > self.config.lone_max_bytes):
            return model, None
        try:
            lone = api.load(target, providers=self.config.providers, threads=lone_threads, spinning=False,
                            progress=False)
        except Exception as exc:  # memory, most likely: the model serves all the same, every run on the lanes'
            log.warning("%s: no session for lone runs (%s); every run uses %d thread(s)", model.name,
                        getattr(exc, "what", exc), self.config.run_threads)
            return model, None
        return model, lone

    def unload(self, key: str) -> bool:
        """Take a model out of the pool; requests already holding it finish. False when it was not loaded."""
        served = self._served.pop(key, None)
        if served is None:
            return False
        self.metrics.loaded.set(len(self._served))
        log.info("unloaded %s", served.model.name)
        self._spawn(served.close())
        return True

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _evict(self, keep: str) -> None:
        """Unload least-recently-used idle, unpinned models while more than max_loaded are loaded."""
        while len(self._served) > self.config.max_loaded:
            idle = [s for s in self._served.values() if s.key != keep and not s.pinned and s.in_flight == 0]
            if not idle:
                return  # every other model is pinned or busy: over the limit until one is free
            self.unload(min(idle, key=lambda s: s.last_used).key)

    async def expire_forever(self) -> None:
        """Unload unpinned models idle for longer than keep_alive (the server's background task)."""
        keep_alive = self.config.keep_alive
        if keep_alive is None:
            return
        interval = min(1.0, max(0.05, keep_alive / 4))
        while True:
            await asyncio.sleep(interval)
            now = time.time()
            for served in self.served:
                if not served.pinned and served.in_flight == 0 and now - served.last_used >= keep_alive:
                    self.unload(served.key)
            self._evict(keep="")  # models that were busy at their load's eviction may be idle now

"""What the routes share: the server's configuration, its pool and thread pools, and small request helpers."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from starlette.requests import Request

from zoo.serve.metrics import Metrics
from zoo.serve.models import ModelPool, PoolConfig

log = logging.getLogger("zoo.serve")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ServeConfig:
    """Everything `zoo serve` was told."""

    pool: PoolConfig = field(default_factory=PoolConfig)
    startup: tuple[str, ...] = ()  # keys (zoo ids or file:PATH) to load and pin before ready
    files: tuple[tuple[str, Path], ...] = ()  # request names of the local files named at start-up
    token: str | None = None
    max_body: int = 64 * 1024 * 1024
    body_timeout: float | None = 30.0  # seconds a request's body may stop arriving before it is answered 408


class ServerState:
    """The live server: pool, metrics, thread pools, readiness."""

    def __init__(self, config: ServeConfig, write_access: Callable[[str], object] | None = None) -> None:
        self.config = config
        self.metrics = Metrics(write_access)
        cores = os.cpu_count() or 2
        # Decoding and parsing (PIL and numpy release the GIL) get their own pool, and session runs each
        # model's own workers (zoo.serve.batching.Lanes), so that a burst of uploads never queues behind
        # inference or the other way round.
        self.prepare_pool = ThreadPoolExecutor(max(2, cores), thread_name_prefix="zoo-prepare")
        self.load_pool = ThreadPoolExecutor(2, thread_name_prefix="zoo-load")
        self.pool = ModelPool(config.pool, loader=self.load_pool, metrics=self.metrics,
                              files=dict(config.files))
        self.ready = not config.startup
        self.startup_error: str | None = None
        self.startup_failure: Exception | None = None  # what the start-up models' load raised
        self.on_startup_failure: Callable[[], None] | None = None  # zoo serve: stop the server, exit non-zero
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Start the keep-alive task and load the start-up models (ready once they are)."""
        self._tasks = [asyncio.create_task(self.pool.expire_forever()), asyncio.create_task(self._load_startup())]

    async def _load_startup(self) -> None:
        try:
            await asyncio.gather(*(self.pool.get(key, pin=True) for key in self.config.startup))
        except Exception as exc:  # reported by /v2/health/ready and the log, then (zoo serve) the exit
            self.startup_error, self.startup_failure = str(getattr(exc, "what", exc)), exc
            if self.on_startup_failure is not None:
                self.on_startup_failure()  # zoo serve says why as it exits
            else:
                log.error("start-up models did not load: %s", self.startup_error)
            return
        self.ready = True
        log.info("ready: %s", ", ".join(s.model.name for s in self.pool.served) or "no models loaded yet")

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for served in self.pool.served:
            await served.close()
        for pool in (self.prepare_pool, self.load_pool):
            pool.shutdown(wait=False, cancel_futures=True)

    async def in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """Run CPU work (decode, parse, encode) off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self.prepare_pool, fn, *args)


def state_of(request: Request) -> ServerState:
    state: ServerState = request.app.state.zoo
    return state


def tag(request: Request, endpoint: str, model: str | None = None) -> None:
    """Name the endpoint and model of a request for its access-log line and metrics labels."""
    request.state.endpoint = endpoint
    if model is not None:
        request.state.model = model

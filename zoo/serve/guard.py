"""The guard every HTTP request passes: bearer token, body size limit, metrics and the access-log line.

Pure ASGI, so that it wraps both doors of the server alike: Starlette's routes (as a
middleware) and the infer route that zoo.serve.front answers before Starlette.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from zoo.counts import count_of
from zoo.serve import auth
from zoo.serve.errors import RequestError, error_body
from zoo.serve.state import ServerState

CLIENT_GONE = 499  # the status logged for a request whose client left before the answer (as nginx logs it)
BODY_CLOCK = "zoo.body_clock"  # the scope's key for its request's BodyClock, where the server protocol keeps one


class BodyClock:
    """When bytes of a request's body last arrived (event-loop time; 0: none yet).

    zoo.serve.protocol keeps one for each body it gathers before handing it on whole: the app
    then waits once for the whole body, and this tells a slow but steady upload from a stalled one.
    """

    __slots__ = ("at",)

    def __init__(self) -> None:
        self.at = 0.0


class Guard:
    """Pure ASGI middleware around every HTTP request: token, body size limit, metrics, access log.

    The body limit is enforced twice: a declared Content-Length over it is refused before a
    byte is read, and a body that streams past it (chunked uploads) is cut off as it arrives.
    """

    def __init__(self, app: ASGIApp, state: ServerState) -> None:
        self.app, self.state = app, state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, limit = time.perf_counter(), self.state.config.max_body
        labels: dict[str, Any] = scope.setdefault("state", {})  # what handlers put in request.state
        seen = {"status": 500, "in": 0, "out": 0, "started": 0}  # 500 until a response starts

        async def counted_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"], seen["started"] = message["status"], 1
            elif message["type"] == "http.response.body":
                seen["out"] += len(message.get("body", b""))
            await send(message)

        watch = _BodyWatch(self.state.config.body_timeout, scope.get(BODY_CLOCK))

        async def limited_receive() -> Message:
            watch.waiting, watch.since = True, watch.loop.time()
            try:
                message = await receive()
            finally:
                watch.waiting = False
            if message["type"] == "http.request":
                if not message.get("more_body", False):
                    watch.stop()  # the body is in: later waits (for a disconnect) may last
                seen["in"] += len(message.get("body", b""))
                if seen["in"] > limit:
                    raise _too_large(limit)
            elif message["type"] == "http.disconnect" and seen["status"] == 500:  # no answer was started
                seen["status"] = CLIENT_GONE
            return message

        try:
            refusal = self._refusal(scope, limit)
            if refusal is not None:
                await _send_error(counted_send, refusal, scope)
            else:
                await self.app(scope, limited_receive, counted_send)
        except asyncio.CancelledError:
            if not watch.stalled:
                raise
            watch.uncancel()
            if seen["status"] == 500 and not seen["started"]:  # nothing was answered yet
                await _send_error(counted_send, _stalled(watch.limit), scope)
        finally:
            watch.stop()
            client = scope.get("client")
            self.state.metrics.record(method=scope["method"], path=scope["path"], status=seen["status"],
                                      seconds=time.perf_counter() - started, model=labels.get("model"),
                                      endpoint=labels.get("endpoint"), client=client[0] if client else None,
                                      received=seen["in"], sent=seen["out"])

    def _refusal(self, scope: Scope, limit: int) -> RequestError | None:
        authorization, length = None, b""
        for name, value in scope["headers"]:  # ASGI servers give header names in lower case
            if name == b"content-length":
                length = value
            elif name == b"authorization":
                authorization = value.decode("latin-1")
        token = self.state.config.token
        if token and scope["path"] not in auth.OPEN_PATHS and not auth.token_matches(authorization, token):
            return RequestError("missing or wrong bearer token", status=401,
                                hint="send the header `Authorization: Bearer <token>` (zoo serve --token)")
        declared = count_of(length.decode("latin-1").strip())
        if declared is not None and declared > limit:
            return _too_large(limit)
        return None


class _BodyWatch:
    """Cancels the request's task when a wait for more of its body lasts `limit` seconds (None: never)
    with no byte of it arriving (as `clock` says, where the protocol gathers the body).

    Only time spent waiting on the client counts: a request whose handler is busy elsewhere (a
    model loading) before it reads on is not stalled. One timer per request, moved on lazily:
    it fires, and sets itself again for what is left unless a wait has lasted the whole limit.
    """

    __slots__ = ("_timer", "clock", "limit", "loop", "since", "stalled", "task", "waiting")

    def __init__(self, limit: float | None, clock: BodyClock | None = None) -> None:
        self.limit, self.loop, self.task, self.clock = limit, asyncio.get_running_loop(), asyncio.current_task(), clock
        self.waiting, self.since, self.stalled = False, self.loop.time(), False
        self._timer = None if limit is None else self.loop.call_later(limit, self._check)

    def _check(self) -> None:
        assert self.limit is not None
        idle = self.loop.time() - (self.since if self.clock is None else max(self.since, self.clock.at))
        if self.waiting and idle >= self.limit and self.task is not None:
            self.stalled, self._timer = True, None
            self.task.cancel()
        else:
            self._timer = self.loop.call_later(self.limit - idle if self.waiting else self.limit, self._check)

    def uncancel(self) -> None:
        if self.task is not None:
            self.task.uncancel()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _stalled(limit: float | None) -> RequestError:
    return RequestError(f"the request body stopped arriving: no byte of it for {limit:g} s", status=408,
                        hint="send the whole body promptly (the server's --body-timeout)")


def _too_large(limit: int) -> RequestError:
    return RequestError(f"the request body is over the {limit} byte limit", status=413,
                        hint="send a smaller body, or start the server with a larger --max-body")


async def _send_error(send: Send, error: RequestError, scope: Scope) -> None:
    protocol = "v2" if scope["path"].startswith("/v2") else "v1"
    response = JSONResponse(error_body(error, protocol=protocol), error.status)
    if error.status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    if error.status in (408, 413):  # the rest of the body may still come: it must not be read as a request
        response.headers["Connection"] = "close"
    await response({"type": "http"}, _no_body, send)


async def _no_body() -> Message:
    return {"type": "http.disconnect"}

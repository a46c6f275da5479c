"""The ASGI app: routes, the one error handler, and the guard (auth, body limit, metrics, access log).

Starlette, not FastAPI: the protocol's bodies are JSON headers followed by raw bytes and
its errors have their own shape, so FastAPI's pydantic models and validation would be
bypassed on the routes that matter, while its dependency (pydantic) is one zoo does not
want. Starlette gives routing, streaming bodies, multipart and a tested ASGI layer over
uvicorn; the OpenAPI document is written out in zoo.serve.openapi.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from zoo.errors import ZooError
from zoo.serve import auth, openapi, v1, v2
from zoo.serve.errors import RequestError, error_body, status_of
from zoo.serve.state import ServeConfig, ServerState, state_of, tag

log = logging.getLogger("zoo.serve")


def build_app(config: ServeConfig) -> Starlette:
    """The server for `config`; its lifespan loads the start-up models and stops the thread pools."""
    state = ServerState(config)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await state.start()
        try:
            yield
        finally:
            await state.stop()

    routes = [*v2.ROUTES, *v1.ROUTES, Route("/metrics", metrics, methods=["GET"]),
              Route("/openapi.json", openapi_json, methods=["GET"]), Route("/docs", docs, methods=["GET"])]
    app = Starlette(routes=routes, lifespan=lifespan, middleware=[Middleware(Guard, state=state)],
                    exception_handlers={ZooError: zoo_error, HTTPException: http_error, Exception: unexpected})
    app.state.zoo = state
    return app


async def metrics(request: Request) -> Response:
    tag(request, "metrics")
    body, content_type = state_of(request).metrics.render()
    return Response(body, media_type=content_type)


async def openapi_json(request: Request) -> JSONResponse:
    return JSONResponse(openapi.schema())


async def docs(request: Request) -> HTMLResponse:
    return HTMLResponse(openapi.page(openapi.schema()))


def _protocol(request: Request) -> str:
    return "v2" if request.url.path.startswith("/v2") else "v1"


async def zoo_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ZooError)
    return JSONResponse(error_body(exc, protocol=_protocol(request)), status_of(exc))


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    hint = "GET /docs lists the routes" if exc.status_code in (404, 405) else None
    error = RequestError(f"{request.method} {request.url.path}: {exc.detail}", status=exc.status_code, hint=hint)
    return JSONResponse(error_body(error, protocol=_protocol(request)), exc.status_code)


async def unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    error = RequestError(f"internal error: {type(exc).__name__}: {exc}", status=500,
                         hint="a bug in zoo serve: the server log has the traceback")
    return JSONResponse(error_body(error, protocol=_protocol(request)), 500)


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
        seen = {"status": 500, "in": 0, "out": 0}

        async def counted_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
            elif message["type"] == "http.response.body":
                seen["out"] += len(message.get("body", b""))
            await send(message)

        async def limited_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                seen["in"] += len(message.get("body", b""))
                if seen["in"] > limit:
                    raise _too_large(limit)
            return message

        try:
            refusal = self._refusal(scope, limit)
            if refusal is not None:
                await _send_error(counted_send, refusal, scope)
            else:
                await self.app(scope, limited_receive, counted_send)
        finally:
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
        if length.isdigit() and int(length) > limit:
            return _too_large(limit)
        return None


def _too_large(limit: int) -> RequestError:
    return RequestError(f"the request body is over the {limit} byte limit", status=413,
                        hint="send a smaller body, or start the server with a larger --max-body")


async def _send_error(send: Send, error: RequestError, scope: Scope) -> None:
    protocol = "v2" if scope["path"].startswith("/v2") else "v1"
    response = JSONResponse(error_body(error, protocol=protocol), error.status)
    if error.status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    await response({"type": "http"}, _no_body, send)


async def _no_body() -> Message:
    return {"type": "http.disconnect"}

"""The ASGI app: Starlette with the routes and the error handlers, behind the guard and the front door.

Starlette, not FastAPI: the protocol's bodies are JSON headers followed by raw bytes and
its errors have their own shape, so FastAPI's pydantic models and validation would be
bypassed on the routes that matter, while its dependency (pydantic) is one zoo does not
want. Starlette gives routing, streaming bodies, multipart and a tested ASGI layer over
uvicorn; the OpenAPI document is written out in zoo.serve.openapi.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from zoo.errors import ZooError
from zoo.serve import openapi, v1, v2
from zoo.serve.errors import RequestError, error_body, internal_error, status_of
from zoo.serve.front import Front
from zoo.serve.guard import Guard
from zoo.serve.state import ServeConfig, ServerState, state_of, tag

log = logging.getLogger("zoo.serve")


def build_app(config: ServeConfig, write_access: Callable[[str], object] | None = None) -> Front:
    """The server for `config`: the front door (infer), then Starlette, whose lifespan loads the start-up models.

    Access-log lines go to `write_access` (zoo serve: stderr's write), else to the zoo.serve.access logger.
    """
    state = ServerState(config, write_access)

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
    return Front(app, state)


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
    return JSONResponse(error_body(internal_error(exc), protocol=_protocol(request)), 500)

"""The server's front door: POSTs to the infer route go straight to their handler, all else to Starlette.

The infer route carries nearly all of a busy server's traffic, and on a small machine the
framework's layers (routing, two exception middlewares, Request and Response objects)
cost per request a tenth of what a mobilenet run does, on the same cores. This app
matches that one route itself and answers it with the same guard (token, body limit,
metrics, access log), the same handler core (zoo.serve.v2.answer_infer) and the same
error bodies as the Starlette route it stands in front of. Other paths and methods (a GET
there answers 405 from Starlette), and the lifespan, go to Starlette unchanged.
"""

from __future__ import annotations

import json
import logging
import re

from starlette.types import ASGIApp, Receive, Scope, Send

from zoo.errors import ZooError
from zoo.serve import oip, v2
from zoo.serve.errors import error_body, internal_error, status_of
from zoo.serve.guard import Guard
from zoo.serve.state import ServerState

log = logging.getLogger("zoo.serve")
# Starlette's {name} and {version}: one path segment each (uvicorn has already percent-decoded the path).
INFER_PATH = re.compile(r"/v2/models/([^/]+)(?:/versions/([^/]+))?/infer")
_HEADER = oip.HEADER.lower().encode("latin-1")


class Front:
    """The outermost ASGI app; see the module docstring."""

    def __init__(self, app: ASGIApp, state: ServerState) -> None:
        self.app, self.state = app, state
        self._guarded_infer = Guard(self._infer, state)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            match = INFER_PATH.fullmatch(scope["path"])
            if match is not None:
                scope["path_params"] = {"name": match[1], "version": match[2]}
                await self._guarded_infer(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _infer(self, scope: Scope, receive: Receive, send: Send) -> None:
        labels, pool = scope["state"], self.state.pool
        labels["endpoint"] = "infer"
        try:
            served = await pool.get(pool.key_of(scope["path_params"]["name"], scope["path_params"]["version"]))
            labels["model"] = served.model.name
            body = await _body(receive)
            if body is None:
                return  # the client went away: nobody to answer
            payload, json_length = await v2.answer_infer(self.state, served, body, _header(scope))
        except ZooError as exc:
            await _send(send, status_of(exc), _json(error_body(exc, protocol="v2")), "application/json")
            return
        except Exception as exc:  # a bug: the protocol's 500, the traceback in the log (as Starlette's handler)
            log.error("unexpected error on POST %s", scope["path"], exc_info=exc)
            await _send(send, 500, _json(error_body(internal_error(exc), protocol="v2")), "application/json")
            return
        if json_length is None:
            await _send(send, 200, payload, "application/json")
        else:
            await _send(send, 200, payload, "application/octet-stream", (_HEADER, str(json_length).encode()))


async def _body(receive: Receive) -> bytes | memoryview | None:
    """The whole request body (a memoryview where zoo.serve.protocol gathered it), or None when the client
    disconnected first."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _header(scope: Scope) -> str | None:
    for name, value in scope["headers"]:  # ASGI servers give header names in lower case
        if name == _HEADER:
            return str(value.decode("latin-1"))
    return None


def _json(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


async def _send(send: Send, status: int, body: bytes, content_type: str, *extra: tuple[bytes, bytes]) -> None:
    headers = [(b"content-length", str(len(body)).encode()), (b"content-type", content_type.encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

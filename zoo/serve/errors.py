"""How a failure becomes an HTTP answer: one status per kind of ZooError, one JSON shape."""

from __future__ import annotations

from typing import Any

from zoo.errors import ImageError, InputError, OpsetError, UnknownModelError, ZooError


class RequestError(ZooError):
    """A request the server refuses, with the HTTP status to answer (400 unless said otherwise)."""

    def __init__(self, what: str, *, status: int = 400, hint: str | None = None) -> None:
        self.status = status
        super().__init__(what, hint=hint)


class LoadError(ZooError):
    """A model could not be loaded: 500 with the reason; the next request tries again."""

    def __init__(self, name: str, cause: BaseException) -> None:
        self.name = name
        reason = cause.what if isinstance(cause, ZooError) else f"{type(cause).__name__}: {cause}"
        hint = cause.hint if isinstance(cause, ZooError) else "see the server log for the traceback"
        super().__init__(f"model {name} failed to load: {reason}", hint=hint)


def internal_error(exc: BaseException) -> RequestError:
    """A bug's answer: 500 naming the exception; the caller logs the traceback."""
    return RequestError(f"internal error: {type(exc).__name__}: {exc}", status=500,
                        hint="a bug in zoo serve: the server log has the traceback")


def status_of(exc: ZooError) -> int:
    """The HTTP status for an expected failure."""
    if isinstance(exc, RequestError):
        return exc.status
    if isinstance(exc, UnknownModelError | OpsetError):
        return 404
    if isinstance(exc, LoadError):
        return 500
    if isinstance(exc, ImageError | InputError):
        return 400
    return 400  # any other ZooError is about what the client asked for (e.g. images for a text model)


def error_body(exc: ZooError, *, protocol: str) -> dict[str, Any]:
    """The JSON error: the protocol's `{"error": …}` (hint folded in) for /v2, zoo's `{error, hint}` for /v1."""
    body: dict[str, Any]
    hint = _hint_of(exc)
    if protocol == "v2":
        body = {"error": exc.what if not hint else f"{exc.what} ({hint})"}
    else:
        body = {"error": exc.what, "hint": hint}
    if isinstance(exc, UnknownModelError):
        body["suggestions"] = list(exc.suggestions)
    return body


def _hint_of(exc: ZooError) -> str | None:
    """The error's hint for an HTTP client: an unknown model's own names the CLI's `zoo search`."""
    if not isinstance(exc, UnknownModelError):
        return exc.hint
    listing = "GET /v1/models lists the catalogue"
    return f"did you mean: {', '.join(exc.suggestions)}? ({listing})" if exc.suggestions else listing

"""Typed reading of manifest dicts: every failure names the file, the model and the field path."""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from functools import lru_cache
from typing import Any, get_args

from zoo.errors import ManifestError


class Reader:
    """Typed access to one manifest dict; every failure names its field path."""

    def __init__(self, data: Any, path: str, source: str, model_id: str | None) -> None:
        self.path, self.source, self.model_id = path, source, model_id
        if not isinstance(data, dict):
            self.fail("", f"expected an object, got {type(data).__name__}")
        self.data: dict[str, Any] = data

    def fail(self, key: str, problem: str) -> None:
        field = f"{self.path}.{key}".strip(".") if key else self.path
        raise ManifestError(self.source, self.model_id, field, problem)

    def child(self, key: str, data: Any) -> Reader:
        return Reader(data, f"{self.path}.{key}".strip("."), self.source, self.model_id)

    def get(self, key: str, kind: type | tuple[type, ...], *, required: bool = False) -> Any:
        if key not in self.data or self.data[key] is None:
            if required:
                self.fail(key, "is required")
            return None
        value = self.data[key]
        ok = isinstance(value, kind) and not (isinstance(value, bool) and bool not in _as_tuple(kind))
        if not ok:
            names = " or ".join(t.__name__ for t in _as_tuple(kind))
            self.fail(key, f"expected {names}, got {type(value).__name__} {value!r}")
        return value

    def text(self, key: str, *, required: bool = False) -> str | None:
        value = self.get(key, str, required=required)
        if required and not value:
            self.fail(key, "must not be empty")
        return value

    def number(self, key: str) -> float | None:
        value = self.get(key, (int, float))
        return None if value is None else float(value)

    def choice(self, key: str, vocabulary: Any, *, required: bool = False) -> Any:
        value = self.get(key, str, required=required)
        allowed = _vocabulary(vocabulary)
        if value is not None and value not in allowed:
            self.fail(key, f"must be one of {', '.join(allowed)}; got {value!r}")
        return value

    def numbers(self, key: str, length: int | None = None) -> tuple[float, ...] | None:
        value = self.get(key, list)
        if value is None:
            return None
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            self.fail(key, f"expected a list of numbers, got {value!r}")
        if length is not None and len(value) != length:
            self.fail(key, f"expected {length} numbers, got {len(value)}")
        return tuple(float(v) for v in value)

    def size(self, key: str) -> tuple[int, int] | None:
        value = self.get(key, list)
        if value is None:
            return None
        if len(value) != 2 or not all(type(v) is int and v > 0 for v in value):
            self.fail(key, f"expected [height, width] as two positive integers, got {value!r}")
        return (value[0], value[1])

    def positive_int(self, key: str, *, required: bool = False) -> int | None:
        value = self.get(key, int, required=required)
        if value is not None and value <= 0:
            self.fail(key, f"must be a positive integer, got {value}")
        return value

    def strings(self, key: str) -> tuple[str, ...]:
        value = self.get(key, list) or []
        if not all(isinstance(v, str) and v for v in value):
            self.fail(key, f"expected a list of non-empty strings, got {value!r}")
        return tuple(value)


@lru_cache(maxsize=None)
def _vocabulary(literal: Any) -> tuple[str, ...]:
    return get_args(literal)


def only(r: Reader, cls: type, extra: tuple[str, ...] = ()) -> None:
    """Refuse unknown fields: a typo ("chanel_order") must not silently fall back to a default."""
    import difflib

    known = {f.name for f in fields(cls)} | set(extra)
    for key in sorted(set(r.data) - known):
        close = difflib.get_close_matches(key, sorted(known), n=1)
        r.fail(key, "unknown field" + (f" (did you mean {close[0]!r}?)" if close else f"; known: {', '.join(sorted(known))}"))


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def to_plain(value: Any) -> Any:
    """Turn frozen manifest values into JSON-ready dicts and lists."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if is_dataclass(value):
        return {f.name: to_plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, tuple):
        return [to_plain(v) for v in value]
    return value

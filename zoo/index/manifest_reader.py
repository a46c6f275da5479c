"""Typed reading of manifest dicts: every failure names the file, the model and the field path.

User manifests (ZOO_MANIFESTS) are untrusted input. `parse_json` turns their bytes into plain
JSON values or a ManifestError: bad UTF-8, NaN/Infinity, numbers outside 64 bits and nesting
deeper than any manifest needs are refused with the model and field they sit in, before any
field is interpreted. The Reader then bounds what a value may make zoo allocate later.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import fields, is_dataclass
from functools import cache
from typing import Any, Literal, NoReturn, get_args, overload

from zoo.errors import ManifestError

INT64_MAX = 2**63 - 1
MAX_DEPTH = 32  # the schema nests 6 deep (models[i].preprocess.resize.size[0]); params a little more
MAX_ID_LENGTH = 96  # Hugging Face's limit for a repo name
# A recipe may not ask for more than this per tensor side, nor this many pixels in all (8192 x 4096):
# a float32 RGB tensor of MAX_TENSOR_PIXELS is 400 MB; a 70000 x 70000 one would be 59 GB.
MAX_SIDE = 16_384
MAX_TENSOR_PIXELS = 2**25
_ID_CHARS = re.compile(r"[A-Za-z0-9._-]+")


class Reader:
    """Typed access to one manifest dict; every failure names its field path."""

    def __init__(self, data: Any, path: str, source: str, model_id: str | None) -> None:
        self.path, self.source, self.model_id = path, source, model_id
        if not isinstance(data, dict):
            self.fail("", f"expected an object, got {type(data).__name__}")
        self.data: dict[str, Any] = data

    def fail(self, key: str, problem: str) -> NoReturn:
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
            self.fail(key, f"expected {names}, got {type(value).__name__} {shorten(value)}")
        return value

    @overload
    def text(self, key: str, *, required: Literal[True]) -> str: ...
    @overload
    def text(self, key: str, *, required: bool = False) -> str | None: ...

    def text(self, key: str, *, required: bool = False) -> str | None:
        value: str | None = self.get(key, str, required=required)
        if required and not value:
            self.fail(key, "must not be empty")
        return value

    def number(self, key: str) -> float | None:
        value = self.get(key, (int, float))
        if value is not None and not math.isfinite(value):
            self.fail(key, f"must be a finite number, got {value!r}")
        return None if value is None else float(value)

    def choice(self, key: str, vocabulary: Any, *, required: bool = False) -> Any:
        value = self.get(key, str, required=required)
        allowed = _vocabulary(vocabulary)
        if value is not None and value not in allowed:
            self.fail(key, f"must be one of {', '.join(allowed)}; got {value!r}")
        return value

    def numbers(self, key: str, length: int | None = None, *, nonzero: bool = False) -> tuple[float, ...] | None:
        value = self.get(key, list)
        if value is None:
            return None
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value):
            self.fail(key, f"expected a list of finite numbers, got {shorten(value)}")
        if length is not None and len(value) != length:
            self.fail(key, f"expected {length} numbers, got {len(value)}")
        if nonzero and 0 in value:
            self.fail(key, f"must not hold 0 (it divides), got {shorten(value)}")
        return tuple(float(v) for v in value)

    def size(self, key: str) -> tuple[int, int] | None:
        value = self.get(key, list)
        if value is None:
            return None
        if len(value) != 2 or not all(type(v) is int and v > 0 for v in value):
            self.fail(key, f"expected [height, width] as two positive integers, got {shorten(value)}")
        if max(value) > MAX_SIDE or value[0] * value[1] > MAX_TENSOR_PIXELS:
            self.fail(key, f"{value[0]}x{value[1]} is over the limit of {MAX_SIDE} pixels a side and "
                           f"{MAX_TENSOR_PIXELS} pixels in all")
        return (value[0], value[1])

    @overload
    def positive_int(self, key: str, *, required: Literal[True], limit: int = INT64_MAX) -> int: ...
    @overload
    def positive_int(self, key: str, *, required: bool = False, limit: int = INT64_MAX) -> int | None: ...

    def positive_int(self, key: str, *, required: bool = False, limit: int = INT64_MAX) -> int | None:
        value: int | None = self.get(key, int, required=required)
        if value is not None and not 0 < value <= limit:
            self.fail(key, f"must be a positive integer up to {limit}, got {value}")
        return value

    def strings(self, key: str) -> tuple[str, ...]:
        value = self.get(key, list) or []
        if not all(isinstance(v, str) and v for v in value):
            self.fail(key, f"expected a list of non-empty strings, got {value!r}")
        return tuple(value)


def id_problem(model_id: str) -> str | None:
    """Why a model id is unusable (None when it is fine): zoo's rule is Hugging Face's repo-name rule.

    The id names the cache folder, the mirror record and the file on a hub, so it must be valid for
    every one of them: HF refuses '..', '--', a leading or trailing '.' or '-', and over 96 characters.
    """
    if len(model_id) > MAX_ID_LENGTH:
        return f"is {len(model_id)} characters long; at most {MAX_ID_LENGTH} are allowed"
    if not _ID_CHARS.fullmatch(model_id):
        return f"must be ASCII letters, digits, '.', '_' or '-', got {shorten(model_id)}"
    if ".." in model_id or "--" in model_id:
        return f"must not contain '..' or '--' (Hugging Face repo names refuse them), got {model_id!r}"
    if model_id[0] in ".-_" or model_id[-1] in ".-":
        return f"must start with a letter or digit and not end with '.' or '-', got {model_id!r}"
    return None


def shorten(value: Any, limit: int = 60) -> str:
    """repr(value), cut to `limit` characters: a hostile manifest must not flood the terminal."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 5]}...{text[-2:]} ({len(text)} characters)"


# -- untrusted JSON -----------------------------------------------------------------------


class _Refused(str):
    """A number token zoo does not accept (NaN, Infinity, 1e999, 400 digits), kept as its text."""


def _parse_int(text: str) -> int | _Refused:
    # Checked on the text: int() of 5000 digits raises ValueError (CPython's digit limit), and a
    # number beyond 64 bits is no size, opset or shape zoo could use.
    if len(text.lstrip("-")) > 19 or abs(int(text)) > INT64_MAX:
        return _Refused(text)
    return int(text)


def _parse_float(text: str) -> float | _Refused:
    value = float(text)
    return value if math.isfinite(value) else _Refused(text)


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def parse_json(raw: bytes, source: str) -> Any:
    """Plain JSON values from a manifest file's bytes, or ManifestError naming model and field."""
    # surrogateescape keeps a bad byte inside the string it belongs to, so the walk below can name
    # the field it sits in instead of only an offset in the file.
    try:
        text = raw.decode("utf-8")
        clean = _SURROGATE_ESCAPE.search(text) is None  # "\udce9" in JSON also makes a lone surrogate
    except UnicodeDecodeError:
        text, clean = raw.decode("utf-8", errors="surrogateescape"), False
    text = text.removeprefix("\ufeff")
    try:
        data = json.loads(text, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_Refused)
    except json.JSONDecodeError as exc:
        raise ManifestError(source, None, "", f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
                            ) from None
    except RecursionError:
        raise ManifestError(source, None, "", f"values are nested far deeper than {MAX_DEPTH} levels") from None
    # Every command parses the built-in manifests: a cheap pass first (valid UTF-8 needs no byte
    # checks, depth and refused numbers need no paths); the walk that names the field runs only
    # when something is wrong.
    if not (clean and _quick_ok(data)):
        _check_values(data, source)
    return data


def _quick_ok(data: Any) -> bool:
    """No refused number and no nesting past MAX_DEPTH (strings are known to be valid UTF-8)."""
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            if depth >= MAX_DEPTH:
                return False
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            if depth >= MAX_DEPTH:
                return False
            stack.extend((v, depth + 1) for v in value)
        elif isinstance(value, _Refused):
            return False
    return True


def _check_values(data: Any, source: str) -> None:
    """Walk the parsed tree (iteratively: no recursion to exhaust) and refuse the first bad value."""
    stack: list[tuple[Any, str, int]] = [(data, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        problem = _value_problem(value, depth)
        if problem is not None:
            model_id, field = _locate(data, path)
            raise ManifestError(source, model_id, field, problem)
        if isinstance(value, dict):
            for key in value:
                if _has_bad_bytes(key):
                    model_id, field = _locate(data, path)
                    raise ManifestError(source, model_id, field, f"a key is not valid UTF-8: {shorten(key)}")
            stack.extend((v, f"{path}.{k}", depth + 1) for k, v in reversed(list(value.items())))
        elif isinstance(value, list):
            stack.extend((v, f"{path}[{i}]", depth + 1) for i, v in reversed(list(enumerate(value))))


def _value_problem(value: Any, depth: int) -> str | None:
    if isinstance(value, _Refused):
        return f"{shorten(str(value), 40)} is not a number zoo accepts (finite, within 64 bits)"
    if isinstance(value, str) and _has_bad_bytes(value):
        raw = value.encode("utf-8", errors="surrogateescape")
        return f"not valid UTF-8 text: {raw[:40]!r}"
    if isinstance(value, (dict, list)) and depth >= MAX_DEPTH:
        return f"values are nested deeper than {MAX_DEPTH} levels"
    return None


def _has_bad_bytes(text: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def _locate(data: Any, path: str) -> tuple[str | None, str]:
    """(model id, field path inside the model) for a path like '.models[3].preprocess.scale'."""
    match = re.match(r"\.models\[(\d+)\]\.?", path)
    if match is None or not isinstance(data, dict):
        return None, path.lstrip(".")
    model = data["models"][int(match.group(1))]
    model_id = model.get("id") if isinstance(model, dict) else None
    shown = model_id if isinstance(model_id, str) and id_problem(model_id) is None else f"models[{match.group(1)}]"
    return shown, path[match.end():]


@cache
def _vocabulary(literal: Any) -> tuple[str, ...]:
    return get_args(literal)


def only(r: Reader, cls: type, extra: tuple[str, ...] = ()) -> None:
    """Refuse unknown fields: a typo ("chanel_order") must not silently fall back to a default."""
    known = {f.name for f in fields(cls)} | set(extra)
    for key in sorted(set(r.data) - known):
        import difflib  # only for an unknown field: parsing a valid entry (every zoo.load) never needs it

        close = difflib.get_close_matches(key, sorted(known), n=1)
        why = f" (did you mean {close[0]!r}?)" if close else f"; known: {', '.join(sorted(known))}"
        r.fail(key, "unknown field" + why)


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

"""The ZooError hierarchy: every failure a user can act on.

Each error keeps its facts as attributes and builds its message from them in
three parts: what happened, which object, and what to do next.

UnknownModelError, OpsetError and HashMismatchError are also AssertionErrors:
the removed onnx.hub raised AssertionError for exactly these three cases, and
zoo.hub is its drop-in, so `except AssertionError` clauses in old code keep
catching them. The CLI's one handler matches ZooError first, so this changes
nothing there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# Exit codes shared by the CLI and documented in README and `zoo --help`.
EXIT_OK = 0
EXIT_UNEXPECTED = 1
EXIT_USAGE = 2
EXIT_DOWNLOAD = 3
EXIT_CHECK_FAILED = 4  # zoo check: outputs differ from the expected ones beyond tolerance


class ZooError(Exception):
    """Root of every error zoo raises on purpose."""

    exit_code = EXIT_USAGE

    def __init__(self, what: str, *, hint: str | None = None) -> None:
        self.what = what
        self.hint = hint
        super().__init__(self.message)

    @property
    def message(self) -> str:
        return self.what if not self.hint else f"{self.what}\nhint: {self.hint}"

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle as the facts, not the constructor call: subclasses take other arguments, and an error
        raised in a worker process (zoo bench's sides, multiprocessing, Ray) must reach the caller whole."""
        return _rebuilt, (type(self), self.args, self.__dict__.copy())


def _rebuilt(cls: type[ZooError], args: tuple[Any, ...], state: dict[str, Any]) -> ZooError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class ManifestError(ZooError, ValueError):
    """A manifest file is malformed: names the file, the model and the field."""

    def __init__(self, source: str, model_id: str | None, field: str, problem: str) -> None:
        self.source = source
        self.model_id = model_id
        self.field = field
        self.problem = problem
        where = f"{source}: model {model_id!r}" if model_id else source
        super().__init__(
            f"bad manifest {where}, field {field!r}: {problem}",
            hint="fix the field (schema: manifests/README.md) or remove the file from ZOO_MANIFESTS",
        )


class UnknownModelError(ZooError, LookupError, AssertionError):
    """No model matches a name; carries up to five suggestions."""

    def __init__(self, name: str, suggestions: Sequence[str] = ()) -> None:
        self.name = name
        self.suggestions = tuple(suggestions)
        from zoo.filecheck import looks_like_path
        from zoo.printable import clipped  # only when raised: its regexes cost a load 1 ms

        hint = "run `zoo search TEXT` or `zoo list` to see the known models"
        if self.suggestions:
            hint = f"did you mean: {', '.join(self.suggestions)}? ({hint})"
        elif looks_like_path(name):  # a file given where a name is wanted (zoo pull ./model.onnx)
            hint = ("this takes a model name; `zoo cache import FILE` puts a zoo model's file in the cache "
                    "(predict, check, export, bench, info and serve take files as they are)")

        super().__init__(f"unknown model {clipped(name)}", hint=hint)


class OpsetError(ZooError, LookupError, AssertionError):
    """A model exists but not at the requested opset."""

    def __init__(self, name: str, opset: int, available: Sequence[tuple[str, int]]) -> None:
        self.name = name
        self.opset = opset
        self.available = tuple(available)
        choices = ", ".join(f"{model_id} (opset {o})" for model_id, o in self.available)
        valid = sorted({o for _, o in self.available})
        super().__init__(
            f"no variant of {name!r} has opset {opset}; available: {choices}",
            hint=f"use --opset with one of {valid}, or omit it for the highest",
        )


class DownloadError(ZooError):
    """No source could deliver a file."""

    exit_code = EXIT_DOWNLOAD


class HashMismatchError(DownloadError, AssertionError):
    """Downloaded bytes are not the bytes the manifest promises."""

    def __init__(
        self,
        model_id: str,
        url: str,
        *,
        expected_sha256: str,
        got_sha256: str,
        expected_size: int,
        got_size: int,
        kept: str = "nothing: the bad bytes were deleted",
        hint: str = "try another source with --mirror URL, or report the source as corrupt",
    ) -> None:
        self.model_id = model_id
        self.url = url
        self.expected_sha256 = expected_sha256
        self.got_sha256 = got_sha256
        self.expected_size = expected_size
        self.got_size = got_size
        self.kept = kept
        super().__init__(
            f"integrity check failed for {model_id} from {url}: "
            f"expected sha256 {expected_sha256} ({expected_size} bytes), "
            f"got sha256 {got_sha256} ({got_size} bytes); kept {kept}",
            hint=hint,
        )


class NotCachedError(ZooError, FileNotFoundError):
    """Offline, and the file is not in the cache."""

    def __init__(self, model_id: str, path: str) -> None:
        self.model_id = model_id
        self.path = path
        super().__init__(
            f"{model_id} is not cached and zoo is offline (missing file: {path})",
            hint=f"copy the file here and run `zoo cache import FILE --id {model_id}`, "
            "or unset ZOO_OFFLINE / HF_HUB_OFFLINE",
        )


class CacheError(ZooError):
    """The cache directory is unusable or inconsistent."""


class ImageError(ZooError):
    """An input image cannot be read or decoded."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(
            f"cannot use image {path}: {reason}",
            hint="pass a readable JPEG, PNG, BMP, GIF, TIFF or WebP file",
        )


class InputError(ZooError, ValueError):
    """Feeds do not match the model's inputs; says what the model expects."""

    def __init__(self, what: str, *, expected: list[str]) -> None:
        self.expected = tuple(expected)
        super().__init__(what, hint="expected: " + "; ".join(self.expected))

    @classmethod
    def wrong_kind(cls, arg: str, value: object, want: str) -> InputError:
        """An argument of the wrong kind, named: `opset='8' (str)`, expected `want`."""
        return cls(f"{arg}={value!r} ({type(value).__name__})", expected=[want])


class ProviderError(ZooError):
    """An execution provider was requested but is not what onnxruntime uses."""

"""What every command shares: flags, JSON and tables on stdout, notes on stderr, the one error handler."""

from __future__ import annotations

import errno
import functools
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn, TypeVar, cast

import click

from zoo.errors import EXIT_UNEXPECTED, EXIT_USAGE, ZooError
from zoo.printable import printable, redact
from zoo.store import interrupt

EPILOG = """\b
Exit codes: 0 ok; 1 unexpected error; 2 bad usage or bad input (unknown
model, unreadable file, bad manifest); 3 download or integrity failure;
4 zoo check found outputs beyond tolerance.
Set ZOO_DEBUG=1 (or pass --debug) to see tracebacks.
"""


_F = TypeVar("_F", bound=Callable[..., Any])


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def table(rows: list[list[str]], headers: list[str]) -> str:
    rows = [[printable(str(c), keep_newlines=False) for c in row] for row in rows]  # ids and names from manifests
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows)]

    def line(cells: list[str]) -> str:
        return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


# json.dumps escapes C0 controls but, with ensure_ascii=False, leaves C1 ones (0x9B is a one-byte CSI) and
# bidirectional overrides raw; \uXXXX keeps the JSON valid and the same once parsed.
_JSON_UNSAFE = {c: f"\\u{c:04x}" for c in [*range(0x7F, 0xA0), 0x200E, 0x200F, *range(0x202A, 0x202F),
                                         *range(0x2066, 0x206A)]}


def emit_json(data: Any) -> None:
    """Print `data` as JSON on stdout, URL credentials redacted."""
    click.echo(redact(json.dumps(data, indent=2, ensure_ascii=False)).translate(_JSON_UNSAFE))


def json_option(func: _F) -> _F:
    """Shared --json flag: print the API's to_dict() data instead of a table."""
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout.")(func)


def opset_option(func: _F) -> _F:
    return click.option(
        "--opset", type=int, default=None, help="Choose the variant with this opset (default: highest)."
    )(func)


def handle_errors(func: _F) -> _F:
    """Turn ZooError into a message on stderr and its exit code; no traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with _stop_downloads_on_sigint():
                return func(*args, **kwargs)
        except ZooError as exc:
            if debug_enabled():  # the traceback, and then the same message and exit code as without --debug
                _print_traceback()
            click.secho(f"error: {printable(exc.what)}", fg="red", err=True)
            if exc.hint:
                click.echo(f"hint: {printable(exc.hint)}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise  # click's own usage errors keep click's message and exit code (2)
        except BrokenPipeError:
            # stdout closed early (`zoo list | head`): stop quietly, as Unix tools do.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(141)
        except OSError as exc:
            if exc.errno != errno.ENAMETOOLONG:
                _unexpected(exc)
            # A path the user gave is longer than the file system allows: the user's to fix, wherever zoo met it.
            from zoo.printable import clipped

            name = clipped(os.fsdecode(exc.filename)) if exc.filename is not None else "a path"
            click.secho(f"error: {exc.strerror}: {printable(name)}", fg="red", err=True)
            click.echo("hint: each name in a path may be at most 255 bytes; use a shorter one", err=True)
            sys.exit(EXIT_USAGE)
        except Exception as exc:  # an unexpected failure is a bug: say so briefly
            _unexpected(exc)

    return cast(_F, wrapper)


def _unexpected(exc: BaseException) -> NoReturn:
    if debug_enabled():
        _print_traceback()
    click.echo(f"unexpected error: {type(exc).__name__}: {printable(str(exc))}", err=True)
    click.echo("hint: rerun with --debug (or ZOO_DEBUG=1) and report the traceback", err=True)
    sys.exit(EXIT_UNEXPECTED)


def _print_traceback() -> None:
    import traceback  # only for --debug

    traceback.print_exc()


@contextmanager
def _stop_downloads_on_sigint() -> Iterator[None]:
    """Ctrl-C also stops downloads in worker threads (`pull -j`), which KeyboardInterrupt never reaches.

    The main thread still gets its KeyboardInterrupt at once; the workers see the
    stop flag, keep their partials and end, so the pool's exit does not wait for
    whole files.
    """
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:  # ignored (nohup), or someone's own
        yield
        return
    interrupt.clear()

    def on_sigint(signum: int, frame: Any) -> None:
        interrupt.request_stop()
        signal.default_int_handler(signum, frame)  # raises KeyboardInterrupt here, as without a handler

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        interrupt.clear()


@contextmanager
def sigint_deferred() -> Iterator[None]:
    """Ctrl-C inside the block takes effect at its end: a row and its count land together.

    The handler in force (Python's, or the one above) is called at the block's end
    when a SIGINT came meanwhile; outside the main thread, or with SIGINT ignored,
    nothing changes.
    """
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or not callable(previous):
        yield
        return
    came: list[tuple[int, Any]] = []
    signal.signal(signal.SIGINT, lambda signum, frame: came.append((signum, frame)))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if came:
            previous(*came[0])


def echo_note(text: str) -> None:
    """A note on stderr, printable: it may quote manifests, servers or file names."""
    click.echo(printable(text), err=True)


def debug_enabled() -> bool:
    return os.environ.get("ZOO_DEBUG", "") not in ("", "0")


def note(resolved_from: str | None) -> None:
    if resolved_from:
        echo_note(f"note: {resolved_from}")


class FiniteRange(click.FloatRange):
    """click.FloatRange that also refuses nan (which passes every comparison a range makes)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if number != number:  # nan
            self.fail(f"{value!r} is not a number", param, ctx)
        return number

"""What every command shares: flags, JSON and tables on stdout, notes on stderr, the one error handler."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from typing import Any

import click

from zoo.errors import EXIT_UNEXPECTED, ZooError

EPILOG = """\b
Exit codes: 0 ok; 1 unexpected error; 2 bad usage or bad input (unknown
model, unreadable file, bad manifest); 3 download or integrity failure;
4 zoo check found outputs beyond tolerance.
Set ZOO_DEBUG=1 (or pass --debug) to see tracebacks.
"""


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def json_option(func: Callable) -> Callable:
    """Shared --json flag: print the API's to_dict() data instead of a table."""
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout.")(func)


def opset_option(func: Callable) -> Callable:
    return click.option(
        "--opset", type=int, default=None, help="Choose the variant with this opset (default: highest)."
    )(func)


def handle_errors(func: Callable) -> Callable:
    """Turn ZooError into a message on stderr and its exit code; no traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ZooError as exc:
            if debug_enabled():
                raise
            click.secho(f"error: {exc.what}", fg="red", err=True)
            if exc.hint:
                click.echo(f"hint: {exc.hint}", err=True)
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
        except Exception as exc:  # an unexpected failure is a bug: say so briefly
            if debug_enabled():
                raise
            click.echo(f"unexpected error: {type(exc).__name__}: {exc}", err=True)
            click.echo("hint: rerun with --debug (or ZOO_DEBUG=1) and report the traceback", err=True)
            sys.exit(EXIT_UNEXPECTED)

    return wrapper


def debug_enabled() -> bool:
    return os.environ.get("ZOO_DEBUG", "") not in ("", "0")


def note(resolved_from: str | None) -> None:
    if resolved_from:
        click.echo(f"note: {resolved_from}", err=True)

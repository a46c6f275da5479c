"""The `zoo` command line: parse, call the API, render. Nothing else."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any

import click

from zoo import api
from zoo.errors import EXIT_UNEXPECTED, ZooError

EPILOG = """\b
Exit codes: 0 ok; 1 unexpected error; 2 bad usage or bad input (unknown
model, unreadable file, bad manifest); 3 download or integrity failure;
4 zoo check found outputs beyond tolerance.
Set ZOO_DEBUG=1 (or pass --debug) to see tracebacks.
"""


def _human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def _table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def _emit_json(data: Any) -> None:
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
            if _debug():
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
            if _debug():
                raise
            click.echo(f"unexpected error: {type(exc).__name__}: {exc}", err=True)
            click.echo("hint: rerun with --debug (or ZOO_DEBUG=1) and report the traceback", err=True)
            sys.exit(EXIT_UNEXPECTED)

    return wrapper


def _debug() -> bool:
    return os.environ.get("ZOO_DEBUG", "") not in ("", "0")


def _note(resolved_from: str | None) -> None:
    if resolved_from:
        click.echo(f"note: {resolved_from}", err=True)


@click.group(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="zoo-client", prog_name="zoo", message="%(prog)s %(version)s")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
def cli(debug: bool) -> None:
    """zoo: fetch, verify and run ONNX Model Zoo models.

    \b
    Examples:
      zoo list --task classification
      zoo search yolo
      zoo info "vgg 19"
      zoo info resnet50 --json
    """
    if debug:
        os.environ["ZOO_DEBUG"] = "1"


def _list_rows(entries: Iterable[Any]) -> tuple[list[list[str]], list[dict[str, Any]]]:
    from zoo import cache

    root = cache.home()
    rows, dicts = [], []
    for e in entries:
        cached = cache.cached_path(e, root) is not None
        rows.append([e.id, e.task, str(e.opset), _human_size(e.size), "yes" if cached else "-"])
        dicts.append(
            {"id": e.id, "hub_name": e.hub_name, "aliases": list(e.aliases), "task": e.task, "family": e.family,
             "variant": e.variant, "opset": e.opset, "sha256": e.sha256, "bytes": e.size, "tags": list(e.tags),
             "cached": cached}
        )
    return rows, dicts


def _print_listing(entries: list[Any], as_json: bool, empty: str) -> None:
    rows, dicts = _list_rows(entries)
    if as_json:
        _emit_json(dicts)
    elif not rows:
        click.echo(empty, err=True)
    else:
        click.echo(_table(rows, ["ID", "TASK", "OPSET", "SIZE", "CACHED"]))


@cli.command("list", epilog=EPILOG)
@click.option("--task", default=None, help="Only this task (e.g. classification, detection).")
@click.option("--tag", default=None, help="Only models with this tag (e.g. vision, text).")
@json_option
@handle_errors
def list_cmd(task: str | None, tag: str | None, as_json: bool) -> None:
    """List the models in the index.

    \b
    Example:
      zoo list --task detection
      zoo list --json | python -c 'import json,sys; print(len(json.load(sys.stdin)))'
    """
    entries = api.list_models(task=task, tag=tag)
    known = api.list_models()
    empty = "no model matches these filters"
    if task and not entries:
        empty += f"; tasks: {', '.join(sorted({e.task for e in known}))}"
    elif tag and not entries:
        empty += f"; tags: {', '.join(sorted({t for e in known for t in e.tags}))}"
    _print_listing(entries, as_json, empty)


@cli.command(epilog=EPILOG)
@click.argument("text")
@json_option
@handle_errors
def search(text: str, as_json: bool) -> None:
    """Find models whose id, alias, hub name, tag, family or task contains TEXT.

    \b
    Example:
      zoo search yolo
    """
    _print_listing(api.search(text), as_json, f"no model matches {text!r}; try `zoo list`")


@cli.command(epilog=EPILOG)
@click.argument("name")
@opset_option
@json_option
@handle_errors
def info(name: str, opset: int | None, as_json: bool) -> None:
    """Show everything about one model: facts, IO, recipes, sources, cache.

    NAME is a model id (vgg19-7), an alias (vgg19, resnet50) or a hub name
    ("VGG 19"), matched case- and space-insensitively.

    \b
    Example:
      zoo info "vgg 19"
      zoo info alexnet --opset 7 --json
    """
    result = api.info(name, opset)
    _note(result.resolved_from)
    if as_json:
        _emit_json(result.to_dict())
        return
    e = result.entry
    lines = [
        ("id", e.id), ("hub name", e.hub_name), ("aliases", ", ".join(e.aliases) or "-"),
        ("family", e.family), ("task", e.task), ("variant", e.variant), ("opset", str(e.opset)),
        ("file", e.file.path), ("sha256", e.sha256), ("size", f"{e.size} bytes ({_human_size(e.size)})"),
        ("test data", e.test_data.path if e.test_data else "-"), ("labels", e.labels or "-"),
        ("license", e.license or "-"), ("confidence", f"{e.confidence.level}: {e.confidence.reason}"),
    ]
    for title, ios in (("inputs", e.inputs), ("outputs", e.outputs)):
        text = "; ".join(f"{io.name} {list(io.shape)} {io.type}" for io in ios) if ios else "not recorded"
        lines.append((title, text))
    if e.preprocess is not None:
        lines.append(("preprocess", _recipe_line(e.preprocess)))
    if e.postprocess is not None:
        lines.append(("postprocess", e.postprocess.kind))
    lines.append(("sources", "\n".join(result.sources)))
    lines.append(("cached", result.cached_path or "no"))
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        value = value.replace("\n", "\n" + " " * (width + 2))
        click.echo(f"{key.ljust(width)}  {value}")


def _recipe_line(recipe: Any) -> str:
    if recipe.kind not in ("image", "image-sequence"):
        return f"{recipe.kind}: {recipe.tokenizer or 'raw tensors'}"
    r = recipe.resize
    parts = [r.method]
    for key in ("size", "shorter_side", "crop", "pad_to_multiple"):
        if getattr(r, key) is not None:
            parts.append(f"{key}={getattr(r, key)}")
    parts += [recipe.interpolation, recipe.channel_order, recipe.layout, recipe.dtype, f"scale={recipe.scale:g}"]
    if recipe.mean:
        parts.append(f"mean={list(recipe.mean)}")
    if recipe.std:
        parts.append(f"std={list(recipe.std)}")
    for extra in recipe.extra_inputs:
        parts.append(f"+{extra.name}={extra.value}")
    return " ".join(parts)


@cli.command(epilog=EPILOG)
@click.argument("names", nargs=-1, required=True)
@opset_option
@click.option("--with-test-data", is_flag=True, help="Also fetch and safely extract the model's test-data archive.")
@click.option("--mirror", "mirrors", multiple=True, metavar="URL",
              help="Mirror base URL laid out like the zoo repo; tried before ZOO_MIRROR and Hugging Face.")
@click.option("--force", is_flag=True, help="Download again even when the file is cached.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=1, help="Pull this many models in parallel.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@json_option
@handle_errors
def pull(names: tuple[str, ...], opset: int | None, with_test_data: bool, mirrors: tuple[str, ...], force: bool,
         jobs: int, quiet: bool, as_json: bool) -> None:
    """Download models, verify their sha256 and size, and print their local paths.

    A cached model costs no network and no re-hash. Stdout gets one absolute
    path per model, so `$(zoo pull mnist-8)` works; messages go to stderr.

    \b
    Examples:
      zoo pull vgg19-7
      zoo pull mnist-8 squeezenet1.1 resnet50 -j 3
      zoo pull mnist-8 --with-test-data --mirror http://mirror.local/zoo
    """
    from concurrent.futures import ThreadPoolExecutor

    entries = []
    for name in names:
        resolution = api.load_index().resolve(name, opset)
        _note(resolution.note)
        entries.append(resolution.entry)

    def one(entry: Any) -> dict[str, Any] | ZooError:
        try:
            results = api.pull_entry(entry, with_test_data=with_test_data, mirrors=mirrors, force=force,
                                     progress=False if quiet else None)
        except ZooError as exc:
            return exc
        out = results[0].to_dict()
        if with_test_data and entry.test_data is not None:
            out["test_data"] = str(api.test_data_dir(entry))
        return out

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        outcomes = list(pool.map(one, entries))
    done = [o for o in outcomes if isinstance(o, dict)]
    if as_json:
        _emit_json(done)
    else:
        for item in done:
            click.echo(item["path"])
    failures = [o for o in outcomes if isinstance(o, ZooError)]
    for failure in failures[:-1]:
        click.secho(f"error: {failure.what}", fg="red", err=True)
    if failures:
        raise failures[-1]


@cli.command(epilog=EPILOG)
@json_option
@handle_errors
def providers(as_json: bool) -> None:
    """List the execution providers onnxruntime offers here, in zoo's preference order.

    \b
    Example:
      zoo providers --json
    """
    from zoo import runtime

    rows = runtime.available()
    if as_json:
        _emit_json(rows)
        return
    table = [[str(r["rank"]), r["name"], ", ".join(f"{d['type']} ({d['vendor']})" for d in r["devices"]) or "-"]
             for r in rows]
    click.echo(_table(table, ["RANK", "PROVIDER", "DEVICES"]))


def main() -> None:
    cli(prog_name="zoo")


# Commands that live in their own modules; imported last because they reuse the helpers above.
from zoo.cli_cache import cache  # noqa: E402
from zoo.cli_mirror import mirror  # noqa: E402
from zoo.cli_run import bench, check, predict  # noqa: E402

for _command in (predict, check, bench, cache, mirror):
    cli.add_command(_command)

"""The `zoo` group and its catalogue commands (list, search, info, pull, providers); the rest live beside it."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import click

from zoo import api
from zoo.cli.add import add, remove
from zoo.cli.cache import cache as cache_group
from zoo.cli.export import export
from zoo.cli.mirror import mirror
from zoo.cli.output import EPILOG, emit_json, handle_errors, human_size, json_option, note, opset_option, table
from zoo.cli.run import bench, check, predict
from zoo.cli.serve import serve
from zoo.errors import InputError, ZooError
from zoo.printable import printable


class ZooGroup(click.Group):
    """The `zoo` group: `--debug` is taken anywhere on the line, since the hint says "rerun with --debug"."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        cut = args.index("--") if "--" in args else len(args)
        if "--debug" in args[:cut]:
            args = [a for a in args[:cut] if a != "--debug"] + args[cut:]
            os.environ["ZOO_DEBUG"] = "1"
        return super().parse_args(ctx, args)


@click.group(cls=ZooGroup, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="zoo-client", prog_name="zoo", message="%(prog)s %(version)s")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors (also accepted after the subcommand).")
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
    from zoo.store import cache

    root = cache.home()
    rows, dicts = [], []
    for e in entries:
        cached = cache.cached_path(e, root) is not None
        rows.append([e.id, e.task, str(e.opset), human_size(e.size), "yes" if cached else "-"])
        dicts.append(
            {"id": e.id, "hub_name": e.hub_name, "aliases": list(e.aliases), "task": e.task, "family": e.family,
             "variant": e.variant, "opset": e.opset, "sha256": e.sha256, "bytes": e.size, "tags": list(e.tags),
             "cached": cached}
        )
    return rows, dicts


def _print_listing(entries: list[Any], as_json: bool, empty: str) -> None:
    rows, dicts = _list_rows(entries)
    if as_json:
        emit_json(dicts)
    elif not rows:
        click.echo(empty, err=True)
    else:
        click.echo(table(rows, ["ID", "TASK", "OPSET", "SIZE", "CACHED"]))


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
    if not text.strip():
        raise InputError("zoo search needs some TEXT to look for", expected=["a word such as yolo or resnet; "
                                                                          "`zoo list` shows every model"])
    _print_listing(api.search(text), as_json, f"no model matches {text!r}; try `zoo list`")


@cli.command(epilog=EPILOG)
@click.argument("name")
@opset_option
@json_option
@handle_errors
def info(name: str, opset: int | None, as_json: bool) -> None:
    """Show everything about one model: facts, IO, recipes, sources, cache.

    NAME is a model id (vgg19-7), an alias (vgg19, resnet50) or a hub name
    ("VGG 19"), matched case- and space-insensitively; or a zoo model's file
    (./mnist-8.onnx), known by its sha256.

    \b
    Example:
      zoo info "vgg 19"
      zoo info alexnet --opset 7 --json
    """
    result = api.info(name, opset)
    note(result.resolved_from)
    if as_json:
        emit_json(result.to_dict())
        return
    e = result.entry
    lines = [
        ("id", e.id), ("hub name", e.hub_name), ("aliases", ", ".join(e.aliases) or "-"),
        ("family", e.family), ("task", e.task), ("variant", e.variant), ("opset", str(e.opset)),
        ("file", e.file.path), ("sha256", e.sha256), ("size", f"{e.size} bytes ({human_size(e.size)})"),
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
        click.echo(printable(f"{key.ljust(width)}  {value}"))  # mirror URLs may hold user:password@


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
@click.option("-c", "--connections", type=click.IntRange(min=1, max=16), default=None,
              help="Parallel Range connections per file (default: automatic: a file of 64 MiB or more goes "
                   "to 4 when one connection brings under 100 MB/s and the server serves ranges).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@json_option
@handle_errors
def pull(names: tuple[str, ...], opset: int | None, with_test_data: bool, mirrors: tuple[str, ...], force: bool,
         jobs: int, connections: int | None, quiet: bool, as_json: bool) -> None:
    """Download models, verify their sha256 and size, and print their local paths.

    A cached model costs no network and no re-hash. Stdout gets one absolute
    path per model, so `$(zoo pull mnist-8)` works; messages go to stderr.

    \b
    Examples:
      zoo pull vgg19-7
      zoo pull mnist-8 squeezenet1.1 resnet50 -j 3
      zoo pull vgg19-7 -c 8
      zoo pull mnist-8 --with-test-data --mirror http://mirror.local/zoo
    """
    from concurrent.futures import ThreadPoolExecutor

    entries = []
    for name in names:
        resolution = api.resolve_name(name, opset)
        note(resolution.note)
        entries.append(resolution.entry)

    def one(entry: Any) -> dict[str, Any] | ZooError:
        try:
            results = api.pull_entry(entry, with_test_data=with_test_data, mirrors=mirrors, force=force,
                                     progress=False if quiet else None, connections=connections)
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
        emit_json(done)
    else:
        for item in done:
            click.echo(item["path"])
    failures = [o for o in outcomes if isinstance(o, ZooError)]
    for failure in failures[:-1]:
        click.secho(f"error: {printable(failure.what)}", fg="red", err=True)  # server text, names from manifests
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
        emit_json(rows)
        return
    cells = [[str(r["rank"]), r["name"], ", ".join(f"{d['type']} ({d['vendor']})" for d in r["devices"]) or "-"]
             for r in rows]
    click.echo(table(cells, ["RANK", "PROVIDER", "DEVICES"]))


def main() -> None:
    cli(prog_name="zoo")


for _command in (predict, check, bench, cache_group, mirror, export, add, remove, serve):
    cli.add_command(_command)

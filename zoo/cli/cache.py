"""`zoo cache`: inspect, verify, import and clean the local cache. Parse, call, render; nothing else.

Results go to stdout, notes and warnings to stderr. Destructive commands show
a plan (zoo.store.cache_plan) and ask before executing it; --dry-run stops at the plan.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from zoo.cli.output import EPILOG, emit_json, handle_errors, human_size, json_option, note, table

if TYPE_CHECKING:
    from zoo.store.cache_plan import DeletePlan
    from zoo.store.cache_scan import CacheInfo


@click.group("cache", context_settings={"help_option_names": ["-h", "--help"]})
def cache() -> None:
    """Inspect, verify, import and clean the local model cache.

    The cache lives in ZOO_HOME (default: the platform's user cache folder);
    `zoo cache dir` prints it.

    \b
    Examples:
      zoo cache ls
      zoo cache verify mnist
      zoo cache prune --older-than 30d --dry-run
    """



cache.epilog = EPILOG
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_AGE = timedelta(days=36500)  # --older-than beyond a century is surely a typo


class Duration(click.ParamType):  # type: ignore[type-arg]  # generic only from click 8.2 on
    """A duration such as 90m, 12h, 30d or 2w."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> timedelta:
        if isinstance(value, timedelta):
            return value
        match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhdw])", str(value).strip().lower())
        if not match:
            self.fail(f"{value!r} is not a duration: write a number and a unit (s, m, h, d, w), e.g. 12h, 30d, 2w",
                      param, ctx)
        seconds = float(match[1]) * _UNITS[match[2]]
        if seconds > MAX_AGE.total_seconds():  # timedelta itself overflows near 2.7 million years
            self.fail(f"{value!r} is longer than {MAX_AGE.days} days: no file in the cache is that old", param, ctx)
        return timedelta(seconds=seconds)


def dry_run_options(func: Any) -> Any:
    """--dry-run and --yes, shared by the destructive commands."""
    func = click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")(func)
    return click.option("--dry-run", is_flag=True, help="Print what would be deleted; delete nothing.")(func)


def _scan() -> CacheInfo:
    from zoo.store.cache_scan import scan

    info = scan()
    for warning in info.warnings:
        click.echo(f"warning: {warning}", err=True)
    return info


def _resolve(names: Sequence[str], info: CacheInfo) -> list[str]:
    """Model ids for the names (id, alias or hub name); a folder in models/ that the index lost also counts."""
    from zoo.api import load_index
    from zoo.errors import UnknownModelError

    ids: list[str] = []
    for name in names:
        try:
            resolution = load_index().resolve(name)  # the full index: housekeeping writes nothing extra
        except UnknownModelError:
            if name not in info.model_dirs:
                raise
            model_id = name
        else:
            note(resolution.note)
            model_id = resolution.entry.id
        if model_id not in ids:
            ids.append(model_id)
    return ids


@cache.command("dir", epilog=EPILOG)
@handle_errors
def dir_cmd() -> None:
    """Print the cache root: ZOO_HOME, else the platform's user cache folder.

    \b
    Example:
      du -sh "$(zoo cache dir)"
    """
    from zoo.store.cache import home

    click.echo(str(home()))


@cache.command("ls", epilog=EPILOG)
@json_option
@handle_errors
def ls(as_json: bool) -> None:
    """List cached models, test data, orphan blobs, partial downloads and the total size.

    \b
    Example:
      zoo cache ls
      zoo cache ls --json | python -c 'import json,sys; print(json.load(sys.stdin)["bytes"])'
    """
    info = _scan()
    if as_json:
        emit_json(info.to_dict())
        return
    if info.entries:
        rows = [[e.model_id or "-", e.kind, human_size(e.size), str(e.path)] for e in info.entries]
        click.echo(table(rows, ["ID", "KIND", "SIZE", "PATH"]))
    else:
        click.echo(f"no models cached in {info.root}", err=True)
    sections = [
        ("partial downloads", [[", ".join(p.model_ids) or "-", f"{human_size(p.size)} of "
                                + (human_size(p.expected_size) if p.expected_size else "?"), str(p.path)]
                               for p in info.partials]),
        ("stale views (`zoo cache prune` removes them)", [[s.model_id or "-", s.reason, str(s.path)]
                                                          for s in info.stale_views]),
        ("optimised models", [[o.key[:16], human_size(o.size), str(o.path)] for o in info.optimized]),
        ("leftover temp files", [[t.reason, human_size(t.size), str(t.path)] for t in info.temp_files]),
    ]
    for title, rows in sections:
        if rows:
            click.echo(f"\n{title}:\n" + "\n".join("  " + "  ".join(row) for row in rows))
    click.echo(f"\ntotal: {human_size(info.size)} ({info.size} bytes) in {info.root}")


@cache.command(epilog=EPILOG)
@click.argument("names", nargs=-1)
@json_option
@handle_errors
def verify(names: tuple[str, ...], as_json: bool) -> None:
    """Re-hash cached files against the sha256 and size in the manifest.

    NAMES (ids, aliases or hub names) limit the check to those models; by
    default every blob is checked. A file that does not match is deleted with
    its views, so nothing bad stays cached, and the exit code is 3. So is a
    file planted at a model's readable path (models/ID/FILE) that is not the
    verified blob: it is reported and removed (zoo never runs it).

    \b
    Example:
      zoo cache verify
      zoo cache verify mnist resnet50 --json
    """
    from zoo.errors import DownloadError
    from zoo.store import cache_verify

    info = _scan()
    entries = list(info.entries)
    if names:
        ids = _resolve(names, info)
        entries = [e for e in entries if e.model_id in ids]
        for model_id in (i for i in ids if i not in {e.model_id for e in entries}):
            click.echo(f"note: {model_id} is not cached; nothing to verify", err=True)
    results = cache_verify.verify(info.root, entries, log=lambda m: click.echo(m, err=True))
    if as_json:
        emit_json([r.to_dict() for r in results])
    else:
        click.echo("\n".join(_verify_lines(r) for r in results))
    bad = [r for r in results if not r.ok]
    if bad:
        again = sorted({i for r in bad for i in r.model_ids})
        raise DownloadError(f"{len(bad)} of {len(results)} cached files failed verification",
                            hint="the bad files were deleted with their views; "
                                 + (f"run `zoo pull {' '.join(again)}` to download them again" if again
                                    else "orphan blobs need no action"))
    if not as_json:
        click.echo(f"{len(results)} cached files verified", err=True)


def _verify_lines(r: Any) -> str:
    lines = [f"{'ok ' if r.ok else 'BAD'}  {', '.join(r.model_ids) or '(orphan)'}  {r.path}"]
    if r.got_sha256 is not None and (r.got_sha256 != r.sha256 or r.expected_size not in (None, r.got_size)):
        expected = "?" if r.expected_size is None else r.expected_size
        lines.append(f"     expected sha256 {r.sha256} ({expected} bytes)")
        lines.append(f"     got      sha256 {r.got_sha256} ({r.got_size} bytes)")
    for view in r.bad_views:
        lines.append(f"     not the blob's bytes (planted or changed): {view}")
    if r.removed:
        lines.append("     removed: " + ", ".join(str(p) for p in r.removed))
    if r.problem:
        lines.append(f"     {r.problem}")
    return "\n".join(lines)


def _interactive() -> bool:
    """Whether a person can answer a question: stdin is a terminal."""
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (AttributeError, ValueError):  # closed or replaced stdin
        return False


def _render_plan(plan: DeletePlan) -> str:
    rows = [[i.what, i.model_id or "-", human_size(i.size), str(i.path)] for i in plan.items]
    return (table(rows, ["WHAT", "ID", "SIZE", "PATH"])
            + f"\n{plan.description}: {_paths(len(plan.items))}, {human_size(plan.size)} ({plan.size} bytes)")


def _paths(n: int) -> str:
    return f"{n} path" if n == 1 else f"{n} paths"


def _finish_trash(root: Path) -> None:
    from zoo.store import cache as layout

    real = Path(os.path.realpath(root))
    if layout.is_zoo_cache(real):
        layout.empty_trash(real)


def _carry_out(plan: DeletePlan, *, dry_run: bool, yes: bool, as_json: bool, empty: str) -> None:
    """Show the plan; unless dry_run, confirm (unless yes), execute it and report what was freed."""
    for text in plan.notes:
        click.echo(f"note: {text}", err=True)
    if not plan.items or dry_run:
        if not dry_run:
            _finish_trash(plan.root)  # a deletion killed after its last rename still leaves trash/ behind
        if as_json:
            emit_json(plan.to_dict())
        elif plan.items:
            click.echo(_render_plan(plan))
        click.echo("dry run: nothing was deleted" if plan.items else empty, err=True)
        return
    if not yes:
        click.echo(_render_plan(plan), err=True)
        if not _interactive():
            from zoo.errors import ZooError

            # click.confirm would read EOF and exit 1 "Aborted!": say what to do instead.
            raise ZooError(f"not deleting {_paths(len(plan.items))} without confirmation: there is no terminal "
                           "to ask on", hint="pass --yes to delete without asking (or --dry-run to only look)")
        try:
            confirmed = click.confirm(f"delete {'this' if len(plan.items) == 1 else 'these'} "
                                      f"{_paths(len(plan.items))}?", err=True)
        except click.Abort:  # Ctrl-C or end of input at the prompt: a no, on a line of its own
            click.echo(err=True)
            confirmed = False
        if not confirmed:  # declining is the user's choice, not a failure: exit 0
            click.echo("nothing was deleted (pass --yes to skip the question)", err=True)
            return
    result = plan.execute()
    for item, why in result.skipped:
        if why != "already gone":
            click.echo(f"warning: kept {item.path}: {why}", err=True)
    if as_json:
        emit_json(result.to_dict())
    else:
        click.echo(f"deleted {_paths(len(result.deleted))}, freed {human_size(result.freed)} ({result.freed} bytes)")


@cache.command(epilog=EPILOG)
@click.argument("names", nargs=-1, required=True)
@dry_run_options
@json_option
@handle_errors
def rm(names: tuple[str, ...], dry_run: bool, yes: bool, as_json: bool) -> None:
    """Delete cached models: their files, views, unpacked test data and optimised copies.

    NAMES are ids, aliases or hub names. A file that another model shares is kept.

    \b
    Example:
      zoo cache rm resnet50 --dry-run
      zoo cache rm resnet50 mnist-8 --yes
    """
    from zoo.store import cache_plan

    info = _scan()
    ids = _resolve(names, info)
    plan = cache_plan.plan_rm(info, ids)
    _carry_out(plan, dry_run=dry_run, yes=yes, as_json=as_json, empty=f"nothing cached for {', '.join(ids)}")


@cache.command(epilog=EPILOG)
@click.option("--older-than", type=Duration(), default=None, metavar="DURATION",
              help="Also delete models not used for this long: 12h, 30d, 2w...")
@dry_run_options
@json_option
@handle_errors
def prune(older_than: timedelta | None, dry_run: bool, yes: bool, as_json: bool) -> None:
    """Delete what no model needs: partial downloads, orphan blobs, stale views,
    optimised copies of removed models and old temp files.

    With --older-than, also delete cached models not read or written for that long.

    \b
    Example:
      zoo cache prune --dry-run
      zoo cache prune --older-than 30d --yes
    """
    from zoo.store import cache_plan

    plan = cache_plan.plan_prune(_scan(), older_than=older_than)
    _carry_out(plan, dry_run=dry_run, yes=yes, as_json=as_json, empty="nothing to prune")


@cache.command(epilog=EPILOG)
@dry_run_options
@json_option
@handle_errors
def clear(dry_run: bool, yes: bool, as_json: bool) -> None:
    """Delete everything zoo cached (blobs, views, partials, locks, optimised models).

    Refuses to run without --yes. CACHEDIR.TAG and files zoo did not make are kept.

    \b
    Example:
      zoo cache clear --dry-run
      zoo cache clear --yes
    """
    from zoo.errors import ZooError
    from zoo.store import cache_plan

    info = _scan()
    if not (yes or dry_run):
        raise ZooError(f"refusing to clear the cache at {info.root} ({human_size(info.size)}) without --yes",
                       hint="see what would go with `zoo cache clear --dry-run`, then run `zoo cache clear --yes`")
    empty = f"the cache at {info.root} is already empty"
    plan = cache_plan.plan_clear(info) if info.root.is_dir() else cache_plan.DeletePlan(info.root, (), "clear")
    _carry_out(plan, dry_run=dry_run, yes=True, as_json=as_json, empty=empty)


@cache.command("import", epilog=EPILOG)
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--id", "model_id", default=None, metavar="ID",
              help="Check the files against this model only (id, alias or hub name).")
@json_option
@handle_errors
def import_cmd(files: tuple[Path, ...], model_id: str | None, as_json: bool) -> None:
    """Add files downloaded by hand: each is identified by its sha256 and copied into the cache.

    Without --id, a file is matched against every model file and test-data
    archive in the index; a test-data archive is also extracted. A file that
    matches nothing is refused (exit 3) and left as it is. Prints the cached
    path of each imported file.

    \b
    Example:
      zoo cache import ~/Downloads/mnist-8.onnx
      zoo cache import model.onnx --id resnet50
    """
    from zoo import api
    from zoo.errors import ZooError
    from zoo.store import cache_import

    index = api.load_index()
    entry = None
    if model_id is not None:
        resolution = index.resolve(model_id)
        if resolution.note:
            click.echo(f"note: {resolution.note}", err=True)
        entry = resolution.entry
    done, failures = [], []
    for path in files:
        try:
            done.append(cache_import.import_local(path, index.entries, entry=entry, extract_to=api.test_data_dir))
        except ZooError as exc:
            failures.append(exc)
    if as_json:
        emit_json([r.to_dict() for r in done])
    else:
        for result in done:
            for fetched, kind in zip(result.files, result.kinds):
                click.echo(f"imported {result.source} as {fetched.model_id} ({kind})", err=True)
                click.echo(str(fetched.path))
            for folder in result.extracted:
                click.echo(f"extracted test data to {folder}", err=True)
    failures.sort(key=lambda exc: exc.exit_code)  # the most serious is raised: its exit code wins
    for failure in failures[:-1]:
        click.secho(f"error: {failure.what}", fg="red", err=True)
        if failure.hint:
            click.echo(f"hint: {failure.hint}", err=True)
    if failures:
        raise failures[-1]

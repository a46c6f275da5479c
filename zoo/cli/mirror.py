"""`zoo mirror`: share verified cached models as a static mirror. Parse, call, render; nothing else.

Results go to stdout, notes and the serving hint to stderr. The export is planned
(zoo.store.mirror) and then executed; --dry-run stops at the plan.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

from zoo.cli.output import EPILOG, emit_json, handle_errors, human_size, json_option, note, table

if TYPE_CHECKING:
    from zoo.store.mirror import ExportPlan, ExportResult


@click.group("mirror", context_settings={"help_option_names": ["-h", "--help"]})
def mirror() -> None:
    """Share cached models with a team: a folder any static web server can serve as ZOO_MIRROR.

    \b
    Example:
      zoo mirror export /srv/zoo && python -m http.server -d /srv/zoo 8000
      ZOO_MIRROR=http://host:8000 zoo pull mnist-8      # on the other machines
    """



mirror.epilog = EPILOG


@mirror.command("export", epilog=EPILOG)
@click.argument("dest_text", metavar="DIR")
@click.argument("names", nargs=-1)
@click.option("--with-test-data", is_flag=True, help="Also export the models' cached test-data archives.")
@click.option("--dry-run", is_flag=True, help="Print what would be written; write nothing.")
@json_option
@handle_errors
def export(dest_text: str, names: tuple[str, ...], with_test_data: bool, dry_run: bool, as_json: bool) -> None:
    """Write verified cached models into DIR, laid out like the zoo repo, for ZOO_MIRROR.

    NAMES (ids, aliases or hub names) choose the models; by default every
    cached model is exported. A name that is not cached is an error (exit 2):
    `zoo pull` it first. Files are hard links to the cache when DIR is on the
    same filesystem, else verified copies; each appears atomically. Files
    already there are kept, so running it again writes nothing new.
    DIR/zoo-mirror.json lists what the mirror holds (id, path, sha256, bytes).

    \b
    Example:
      zoo mirror export /srv/zoo && python -m http.server -d /srv/zoo 8000
      ZOO_MIRROR=http://host:8000 zoo pull mnist-8 resnet50     # on another machine
      zoo mirror export /srv/zoo resnet50 mnist --with-test-data --dry-run
    """
    from zoo.errors import InputError

    # click would read an empty DIR as "." and write the mirror into the current folder.
    if not dest_text:
        raise InputError("DIR is an empty string", expected=["the folder to write the mirror into"])
    dest = Path(dest_text).expanduser()
    if os.path.exists(dest) and not os.path.isdir(dest):
        raise InputError(f"{dest} is a file", expected=["a folder (created when missing)"])
    from zoo.store import mirror as mirror_mod

    plan = mirror_mod.plan(dest, _resolve(names) if names else None, with_test_data=with_test_data)
    for text in plan.notes:
        click.echo(text if text.startswith("warning: ") else f"note: {text}", err=True)
    if not plan.steps and not plan.carried:
        click.echo("nothing to export: no models are cached (`zoo pull NAME` first)", err=True)
        return
    if dry_run:
        _show_plan(plan, as_json)
        return
    result = plan.execute()
    from zoo.store.add import export_manifest  # in-house models travel with their manifest entries

    carried = export_manifest(dest, [f.model_id for f, _ in result.files])
    if carried is not None:
        click.echo(f"note: wrote {carried} (your models' manifest); elsewhere: download it and list it "
                   "in ZOO_MANIFESTS", err=True)
    if as_json:
        emit_json(result.to_dict())
    else:
        _show_result(result)


def _resolve(names: Sequence[str]) -> list[str]:
    """Model ids for the names (id, alias or hub name), saying on stderr what an alias resolved to."""
    from zoo.api import load_index

    ids: list[str] = []
    for name in names:
        resolution = load_index().resolve(name)  # the full index: housekeeping writes nothing extra
        note(resolution.note)
        if resolution.entry.id not in ids:
            ids.append(resolution.entry.id)
    return ids


def _show_plan(plan: ExportPlan, as_json: bool) -> None:
    if as_json:
        emit_json(plan.to_dict())
    else:
        rows = [[s.action, s.file.model_id, s.file.kind, human_size(s.file.size), s.file.path] for s in plan.steps]
        click.echo(table(rows, ["ACTION", "ID", "KIND", "SIZE", "PATH"]))
    index = "would be updated" if plan.index_changed else "unchanged"
    click.echo(f"dry run: nothing was written ({len(plan.writes)} of {len(plan.steps)} files to write; "
               f"{plan.index} {index})", err=True)


def _show_result(result: ExportResult) -> None:
    rows = [[how, f.model_id, f.kind, human_size(f.size), f.path] for f, how in result.files]
    click.echo(table(rows, ["ACTION", "ID", "KIND", "SIZE", "PATH"]))
    counts = {how: sum(1 for _, h in result.files if h == how) for how in ("hardlink", "copy", "kept")}
    click.echo(f"exported {len(result.files)} files to {result.dest}: {counts['hardlink']} hard-linked, "
               f"{counts['copy']} copied ({human_size(result.written_size)}), {counts['kept']} already there; "
               f"{result.index} {'written' if result.index_written else 'unchanged'}", err=True)
    click.echo(f"serve it: python -m http.server -d {result.dest} 8000; "
               "then elsewhere: ZOO_MIRROR=http://HOST:8000 zoo pull NAME", err=True)

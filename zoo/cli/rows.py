"""The one row loop of `zoo predict`: results (local or from Ray) -> stdout, --output and --save.

Checked before any model is downloaded or loaded (`check_targets`): every input path
exists, the --output file and the --save target can be written. Then `write_rows`
consumes Prediction/Failure rows in input order whatever produced them.

stdout has one shape per mode: text blocks, or with --json one JSON object per input
per line (JSON Lines, error rows included), flushed as they come. Error rows also go
to stderr in text mode. Progress bars are on stderr, only on a terminal, and never
share a line with a result.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import click

from zoo.cli.output import sigint_deferred
from zoo.errors import InputError
from zoo.prediction import Failure, Prediction, Result
from zoo.printable import printable, shown

SAVE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


@dataclass(frozen=True, slots=True)
class RowCounts:
    """How a run went."""

    predicted: int
    failed: int
    skipped: int


def output_path(text: str, flag: str) -> Path:
    """The Path of an output flag's value; an empty string is refused, never read as the current folder."""
    if not text:
        raise InputError(f"{flag} is an empty string", expected=["a file or folder name"])
    return Path(text).expanduser()


def check_inputs(inputs: Sequence[str]) -> None:
    """Every named input exists (an empty string is no path): exit 2 before any download."""
    for value in inputs:
        if not value:
            raise InputError("an input path is an empty string", expected=["an image, a folder or a .csv/.npy file"])
        if not os.path.exists(value):  # not Path.exists(): it raises for a name too long (see zoo.filecheck)
            from zoo.filecheck import unusable

            raise InputError(unusable("input", value), expected=["an existing image, folder or .csv/.npy file"])


def check_save_target(save: Path, *, many: bool) -> None:
    """--save OUT: an image file name for one input, a folder (created if its parent exists) for several."""
    if not str(save):
        raise InputError("--save is an empty string", expected=["an image file name, or a folder for several inputs"])
    if many:
        if save.exists() and not save.is_dir():
            raise InputError(f"--save {save} is a file, but there are several inputs",
                             expected=["a folder: one image per input is written there"])
        if not save.exists() and not save.parent.is_dir():
            raise InputError(f"the folder above --save {save} does not exist", expected=[f"mkdir -p {save.parent}"])
        return
    if save.is_dir():
        raise InputError(f"--save {save} is a folder, but there is one input",
                         expected=["an image file name such as out.png"])
    if save.suffix.lower() not in SAVE_SUFFIXES:
        raise InputError(f"--save {save}: unknown image extension {save.suffix or '(none)'!r}",
                         expected=[f"a file name ending in {', '.join(SAVE_SUFFIXES)}"])
    if not save.parent.is_dir():
        raise InputError(f"the folder of --save {save} does not exist", expected=[f"mkdir -p {save.parent}"])


def save_path(save: Path, input_name: str, model: str, *, many: bool) -> Path:
    """SAVE itself for one input; SAVE/<stem>.<model>.png for several."""
    if not many:
        return save
    save.mkdir(exist_ok=True)
    return save / f"{Path(input_name).stem}.{model}.png"


def write_rows(results: Iterable[Result], *, total: int, desc: str, output: Path | None, resume: bool,
               as_json: bool, save: Path | None, many: bool, quiet: bool) -> RowCounts:
    """Write every row where it belongs; returns the counts for the summary line."""
    from tqdm import tqdm

    from zoo.batch import ResultWriter
    from zoo.store.progress import bar_size

    writer = ResultWriter(output, append=resume) if output is not None else None
    predicted = failed = 0
    drawn = not quiet and total > 1 and sys.stderr.isatty()
    columns, lines = bar_size() if drawn else (None, None)
    bar = tqdm(total=total, unit="input", desc=desc, file=sys.stderr, mininterval=0.5, leave=False,
               disable=not drawn, ncols=columns, nrows=lines)
    try:
        for result in results:
            # A row in the file and its count go together, so that the note below tells the file's truth; rows
            # on a terminal keep Ctrl-C as it is (a write blocked on a full pipe must still be interruptible).
            with sigint_deferred() if writer is not None else contextlib.nullcontext():
                if writer is not None:
                    writer.write(result)
                else:
                    _show(bar, result, as_json=as_json, many=many)
                if isinstance(result, Failure):
                    failed += 1
                else:
                    predicted += 1
            if save is not None and isinstance(result, Prediction):
                _save(result, save_path(save, result.input, result.model, many=many), bar)
            bar.update(1)
    except KeyboardInterrupt:
        if writer is not None:  # every row written so far is whole: say how to go on from there
            bar.close()
            click.echo(f"note: {predicted + failed} of {total} rows written to {shown(str(output))}: run the same "
                       "command with --resume to do the rest", err=True)
        raise
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    return RowCounts(predicted, failed, 0)


def _show(bar: object, result: Result, *, as_json: bool, many: bool) -> None:
    """One row on the terminal: a JSON line, an error and its hint on stderr, or the prediction."""
    from zoo.batch import dumps_row

    if as_json:
        _echo(bar, dumps_row(result.to_dict()))
    elif isinstance(result, Failure):
        _echo(bar, f"error: {shown(result.input)}: {printable(result.error)}", err=True)
        if result.hint:
            _echo(bar, f"hint: {printable(result.hint)}", err=True)
    else:
        _echo(bar, str(result) + ("\n" if many else ""))


def _echo(bar: object, line: str, *, err: bool = False) -> None:
    from tqdm import tqdm

    # tqdm.write clears the bar first, so a result never shares a terminal line with it.
    if getattr(bar, "disable", True):
        click.echo(line, err=err)
    else:
        tqdm.write(line, file=sys.stderr if err else sys.stdout)


def _save(result: Prediction, target: Path, bar: object) -> None:
    try:
        result.save(target)
    except OSError as exc:  # a folder zoo may not write to, a read-only mount, a full disk
        raise InputError(f"cannot save {target}: {exc.strerror or exc}",
                         expected=["--save in a folder you can write to"]) from None
    _echo(bar, f"saved {shown(str(target))}", err=True)

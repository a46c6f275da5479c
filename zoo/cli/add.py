"""`zoo add` and `zoo remove`: your own ONNX files as zoo models. Parse, call zoo.api, render.

Only click and the output module at import time: `zoo --help` must stay light.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from zoo.cli.output import EPILOG, emit_json, handle_errors, json_option

if TYPE_CHECKING:
    pass


@click.command(epilog=EPILOG)
@click.argument("file", type=click.Path(path_type=Path))
@click.argument("inputs", nargs=-1, type=click.Path(path_type=Path), metavar="[INPUT]...")
@click.option("--id", "model_id", required=True, metavar="ID",
              help="The model's id: letters, digits, '.', '_', '-'; never a built-in id, alias or hub name.")
@click.option("--task", default=None, metavar="T",
              help="e.g. tabular-classification, tabular-regression, classification (default: classification "
                   "with a recipe, else tabular).")
@click.option("--recipe", default=None, metavar="NAME", help="A registered image recipe (imagenet, caffe-bgr, ...).")
@click.option("--recipe-json", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="FILE",
              help="An ImageRecipe in the manifest schema (manifests/README.md), e.g. NHWC with scale 1/255.")
@click.option("--labels", default=None, metavar="SET|FILE|A,B,C",
              help="A built-in label set, a file with one label per line, or the labels comma-separated.")
@click.option("--postprocess", default=None, metavar="KIND",
              help="How outputs become answers, e.g. already-probabilities-topk, softmax-topk.")
@click.option("--manifest", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="PATH",
              help="Write this manifest file instead of the user manifest (then list it in ZOO_MANIFESTS).")
@click.option("--test-inputs", "record", is_flag=True,
              help="Run the added model once on INPUT... (images, .csv or .npy, as `zoo predict` takes them) and "
                   "keep the outputs as its test set, so that `zoo check ID` needs no flags.")
@json_option
@handle_errors
def add(file: Path, inputs: tuple[Path, ...], model_id: str, task: str | None, recipe: str | None,
        recipe_json: Path | None, labels: str | None, postprocess: str | None, manifest: Path | None, record: bool,
        as_json: bool) -> None:
    """Make FILE (.onnx) a zoo model: hashed, its opset and IO read, imported into the verified cache,
    and written to the user manifest (ZOO_HOME/manifests/user.json), which every zoo command reads.

    Adding an id that is already yours replaces its entry. Undo with `zoo remove ID`.
    With --test-inputs, the model then runs once on each INPUT, prepared as `zoo predict`
    prepares it, and the outputs become its test set (`zoo check ID`); if that fails, the add
    is undone.

    \b
    Examples:
      zoo add rf_iris.onnx --id rf-iris --task tabular-classification --labels setosa,versicolor,virginica
      zoo predict rf-iris test.csv --json
      zoo add flowers.onnx --id flowers --recipe-json recipe.json --labels daisy,rose,tulip
      zoo add flowers.onnx --id flowers --recipe-json recipe.json --test-inputs rose.jpg tulip.jpg
      zoo check flowers
    """
    from zoo import api
    from zoo.errors import InputError

    if recipe and recipe_json:
        raise InputError("--recipe and --recipe-json were both given", expected=["one of them"])
    _check_inputs(inputs, record=record, manifest=manifest)
    chosen: Any = recipe
    if recipe_json is not None:
        chosen = _read_recipe(recipe_json)
    result = api.add(file, model_id, task=task, recipe=chosen, labels=labels, postprocess=postprocess,
                     manifest=manifest, test_inputs=inputs if record else ())
    recorded = result.recorded
    if recorded is not None and recorded.skipped:
        click.echo(f"note: the test set leaves out {', '.join(recorded.skipped)}: not a numeric tensor (ZipMap's "
                   f"list of dicts cannot be a TensorProto); `zoo check {result.entry.id}` compares "
                   f"{', '.join(recorded.recorded)}", err=True)
    if as_json:
        emit_json(result.to_dict())
        return
    e = result.entry
    click.echo(f"{'replaced' if result.replaced else 'added'} {e.id}: {e.task}, opset {e.opset}, sha256 {e.sha256}, "
               f"{e.size} bytes")
    for title, ios in (("inputs", e.inputs or ()), ("outputs", e.outputs or ())):
        click.echo(f"  {title}: " + "; ".join(f"{io.name} {list(io.shape)} {io.type}" for io in ios))
    click.echo(f"  manifest: {result.manifest}")
    click.echo(f"  cached: {result.path}")
    if recorded is not None and e.test_data is not None:
        click.echo(f"  test data: {recorded.sets} set(s) of {', '.join(recorded.recorded)}, sha256 "
                   f"{e.test_data.sha256}, {e.test_data.size} bytes (zoo check {e.id})")
    if manifest is not None:
        click.echo(f"note: add {result.manifest} to ZOO_MANIFESTS so that zoo reads it", err=True)


def _check_inputs(inputs: tuple[Path, ...], *, record: bool, manifest: Path | None) -> None:
    """Refuse test inputs zoo add could not run before anything is written."""
    from zoo.errors import InputError
    from zoo.index.user_manifest import is_read

    if inputs and not record:
        raise InputError(f"{inputs[0]} was given after FILE without --test-inputs",
                         expected=["zoo add FILE.onnx --id ID --test-inputs INPUT..."])
    if record and not inputs:
        raise InputError("--test-inputs needs inputs to run", expected=["images, .csv or .npy files after FILE"])
    for path in inputs:
        if not path.is_file():
            raise InputError(f"test input {path} is not a file", expected=["image, .csv or .npy files"])
    if record and manifest is not None and not is_read(manifest):
        raise InputError(f"--test-inputs runs the model through zoo, which does not read {manifest}",
                         expected=[f"list it in ZOO_MANIFESTS first (export ZOO_MANIFESTS={manifest})",
                                   "or leave out --manifest (the user manifest is always read)"])


def _read_recipe(path: Path) -> Any:
    from zoo import safejson
    from zoo.errors import InputError, ManifestError
    from zoo.store.add import parse_recipe

    try:
        data = safejson.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read --recipe-json {path}: {exc}",
                         expected=["a JSON ImageRecipe (manifests/README.md)"]) from None
    if not isinstance(data, dict):
        raise InputError(f"--recipe-json {path} is not a JSON object", expected=["a JSON ImageRecipe"])
    try:
        return parse_recipe(data, str(path))
    except ManifestError as exc:  # its hint is about ZOO_MANIFESTS files, which this is not
        raise InputError(f"--recipe-json {path}, field {exc.field!r}: {exc.problem}",
                         expected=["an ImageRecipe as manifests/README.md describes it"]) from None


@click.command(epilog=EPILOG)
@click.argument("model_id", metavar="ID")
@click.option("--keep-files", is_flag=True, help="Keep the cached files; only take the entry out of the manifest.")
@click.option("--manifest", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="PATH",
              help="The manifest file the model was added to (default: the user manifest).")
@json_option
@handle_errors
def remove(model_id: str, keep_files: bool, manifest: Path | None, as_json: bool) -> None:
    """Undo `zoo add ID`: its manifest entry and its cached files go. Built-in models are never removed.

    \b
    Example:
      zoo remove rf-iris
    """
    from zoo import api

    result = api.remove(model_id, manifest=manifest, keep_files=keep_files)
    if as_json:
        emit_json(result.to_dict())
        return
    click.echo(f"removed {result.model_id} from {result.manifest}"
               + (f"; deleted {len(result.deleted)} cached file(s)" if result.deleted else ""))

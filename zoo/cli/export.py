"""`zoo export`: write one self-contained ONNX file (preprocessing and decoding in the graph)."""

from __future__ import annotations

import click

from zoo.cli.output import emit_json, handle_errors, json_option, opset_option


@click.command("export")
@click.argument("name")
@click.argument("out")
@opset_option
@click.option("--postprocess/--no-postprocess", default=True, show_default=True,
              help="Decode in the graph too (top-k and labels, boxes after NMS) where ONNX ops allow.")
@click.option("--top-k", "topk", type=click.IntRange(1, 1_000_000), default=None,
              help="How many classes top_k holds (at most the model's classes).")
@json_option
@handle_errors
def export(name: str, out: str, opset: int | None, postprocess: bool, topk: int | None, as_json: bool) -> None:
    """Export NAME as one ONNX file that takes raw uint8 RGB pixels.

    The file's input is `image`, uint8 [H, W, 3] RGB ([H, W] for grey models), any size;
    the recipe (resize, crop, channel order, mean/std, layout) runs in the graph with
    standard ONNX ops, so onnxruntime for Node.js or the web gives zoo's answer. See
    docs/EXPORT.md for each recipe's measured difference from zoo's own preprocessing.

    \b
    Example:
      zoo export mobilenetv2-12-int8 m.onnx
      zoo export ultraface-320 faces.onnx --json
      zoo export ./downloads/resnet50-v1-12.onnx r.onnx   # a zoo model's file, known by its sha256
    """
    # Heavy imports here: `zoo --help` must not load onnx or numpy.
    from pathlib import Path

    from zoo.errors import InputError
    from zoo.export import export_model

    target = Path(out)
    if not out or target.is_dir() or not target.parent.is_dir():
        raise InputError(f"cannot write the exported model to {out!r}: "
                         + ("it is a folder" if out and target.is_dir() else "its folder does not exist"),
                         expected=["a file name such as model.onnx in an existing folder"])
    from zoo import api
    from zoo.filecheck import looks_like_path

    # A local .onnx exports when zoo knows its recipe: a zoo model's file (by sha256) or one `zoo add` took.
    source = api.load(name, opset=opset, progress=False) if looks_like_path(name) else name
    report = export_model(source, out, opset=opset, postprocess=postprocess, topk=topk)
    if as_json:
        emit_json(report.to_dict())
        return
    click.echo(report.path)
    decoded = report.postprocess or "none"
    click.echo(f"note: {report.model_id}, opset {report.opset}, outputs {', '.join(report.outputs)}; "
               f"decoded in-graph: {decoded}", err=True)
    if report.note:
        click.echo(f"note: {report.note}", err=True)

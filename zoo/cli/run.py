"""The `zoo predict`, `zoo check` and `zoo bench` commands: the ones that run models."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from zoo import api
from zoo.cli.output import EPILOG, FiniteRange, emit_json, handle_errors, json_option, note, opset_option, table
from zoo.errors import EXIT_USAGE, InputError
from zoo.prediction import Failure, Prediction, Result


@click.command(epilog=EPILOG)
@click.argument("model")
@click.argument("inputs", nargs=-1, required=True)
@opset_option
@click.option("--top-k", "topk", type=click.IntRange(min=1), default=None,
              help="How many classes to show (default: 5).")
@click.option("--score-threshold", type=FiniteRange(0, 1), default=None,
              help="Minimum detection score (default: the model's recipe).")
@click.option("--provider", "providers", default=None,
              help="Execution provider(s), comma-separated, best first: cuda, tensorrt, openvino, cpu... "
                   "(default: ZOO_PROVIDERS, else the best available).")
@click.option("--strict-provider", is_flag=True, help="Fail instead of warning when a requested provider is not used.")
@click.option("--threads", type=click.IntRange(1, 1024), default=None, help="Intra-op threads for onnxruntime.")
@click.option("--recipe", default=None, help="Preprocessing recipe for a local model: imagenet, caffe-bgr, inception.")
@click.option("--labels", "labels_file", default=None, help="Label set name or a file with one label per line.")
@click.option("--save", "save_text", default=None, metavar="PATH",
              help="Write the annotated image, segmentation overlay or output image (a folder for several inputs).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@click.option("--recursive", "-r", is_flag=True, help="Look for images in sub-folders of folder inputs too.")
@click.option("--glob", "pattern", default=None, help="Only files matching this pattern in folder inputs ('*.jpg').")
@click.option("--batch-size", type=click.IntRange(min=1), default=16,
              help="Images per run where the model has a batch axis (folder runs).")
@click.option("--output", "-o", "output_text", default=None, metavar="FILE",
              help="Write one row per input to a .jsonl or .csv file, flushed as it goes.")
@click.option("--resume", is_flag=True, help="Skip inputs already in --output and append the rest.")
@click.option("--ray", "ray_address", is_flag=False, flag_value="local", default=None, metavar="[ADDRESS]",
              help="Run on Ray Data (zoo-client[ray]): bare --ray starts a local instance on 127.0.0.1; "
                   "--ray auto or --ray ray://HEAD:10001 joins a cluster.")
@json_option
@handle_errors
def predict(model: str, inputs: tuple[str, ...], opset: int | None, topk: int | None, score_threshold: float | None,
            providers: str | None, strict_provider: bool, threads: int | None, recipe: str | None,
            labels_file: str | None, save_text: str | None, quiet: bool, recursive: bool, pattern: str | None,
            batch_size: int, output_text: str | None, resume: bool, ray_address: str | None, as_json: bool) -> None:
    """Run MODEL on images (or .npy/.csv tables for tabular models).

    MODEL is a zoo name (pulled and verified if not cached) or a local .onnx file.
    A folder input, or --output, streams: images are decoded in threads while the
    model runs, unreadable files become error rows, and --resume continues an
    interrupted run.

    \b
    Examples:
      zoo predict resnet50 frog.jpg
      zoo predict ultraface crowd.jpg --save faces.png
      zoo predict mobilenetv2-12-int8 a.jpg b.jpg --json
      zoo predict my_model.onnx cat.jpg --recipe imagenet --labels imagenet1k
      zoo predict shufflenet-v2-12-int8 photos/ -r -o results.jsonl --resume
      zoo predict shufflenet-v2-12-int8 photos/ --ray auto -o results.jsonl
    """
    from zoo import batch
    from zoo.cli import rows

    # click would turn an empty PATH into "." (the current folder): take text, and refuse "" here.
    output = None if output_text is None else rows.output_path(output_text, "--output")
    save = None if save_text is None else rows.output_path(save_text, "--save")
    if resume and output is None:
        raise click.UsageError("--resume needs --output FILE (the rows already written there are skipped)")
    # Everything the user typed is checked before a model is downloaded or loaded.
    rows.check_inputs(inputs)
    paths = batch.list_inputs(inputs, recursive=recursive, pattern=pattern)
    if not paths:  # only folders were named, and they hold nothing to run on
        raise InputError(f"no inputs: {', '.join(inputs)} holds no "
                         + (f"files matching {pattern!r}" if pattern else "image files"),
                         expected=["a folder with images (" + " ".join(batch.IMAGE_SUFFIXES) + ")"
                                   + ("" if recursive else "; add -r to look in its subfolders too")])
    many = len(paths) != 1 or len(inputs) != 1 or Path(inputs[0]).is_dir()
    if output is not None:
        batch.check_output_file(output)
    if save is not None:
        rows.check_save_target(save, many=many)
    done = batch.done_inputs(output) if resume and output is not None else set()
    todo = [p for p in paths if p not in done]
    if ray_address is not None:
        results = _ray_results(model, todo, ray_address, batch_size=batch_size, topk=topk,
                               score_threshold=score_threshold, opset=opset, providers=providers, recipe=recipe,
                               labels=labels_file, threads=threads, strict_provider=strict_provider)
        name = model
    else:
        from zoo import tuning  # many inputs: one intra-op thread per stream (zoo.tuning says why)

        streaming = tuning.folder_threads(tuning.usable_cores()) if len(todo) > 1 else None
        loaded = api.load(model, opset=opset, providers=providers, recipe=recipe, labels=labels_file,
                          threads=threads or streaming, strict_provider=strict_provider,
                          progress=False if quiet else None, spinning=False if len(todo) > 1 else None)
        if not quiet:
            note(loaded.note)
        loaded.ensure_runnable()
        if save is not None and loaded.runner.kind == "tabular":
            raise click.UsageError("--save draws on images; a tabular model's rows have nothing to draw")
        results = loaded.predict_iter(todo, batch_size=batch_size, topk=topk, score_threshold=score_threshold)
        name = loaded.name
    counts = rows.write_rows(results, total=len(todo), desc=name, output=output, resume=resume, as_json=as_json,
                             save=save, many=many, quiet=quiet)
    skipped = f", {len(paths) - len(todo)} already in {output}" if done else ""
    if many or counts.failed or skipped:
        click.echo(f"{counts.predicted} predicted, {counts.failed} error rows{skipped}", err=True)
    if counts.failed:
        sys.exit(EXIT_USAGE)


def _ray_results(model: str, paths: list[str], address: str, **options: Any) -> Iterator[Result]:
    """Rows from Ray workers, rebuilt as the Prediction/Failure rows the local path gives."""
    from zoo import ray as on_ray

    for row in on_ray.iter_paths(model, paths, address=address, **options):
        if row.get("error"):
            yield Failure(str(row["input"]), str(row["model"]), str(row["error"]), row.get("hint"))
        else:
            yield Prediction.from_dict(row)


@click.command(epilog=EPILOG)
@click.argument("names", nargs=-1, required=True)
@opset_option
@click.option("--provider", "providers", default=None, help="Run on this provider (default: the best available).")
@click.option("--test-data", type=click.Path(path_type=Path), default=None,
              help="A folder with test_data_set_*/ (default: the model's archive, pulled and extracted).")
@click.option("--all-providers", is_flag=True, help="Compare every available provider with CPU instead.")
@json_option
@handle_errors
def check(names: tuple[str, ...], opset: int | None, providers: str | None, test_data: Path | None,
          all_providers: bool, as_json: bool) -> None:
    """Run models on the zoo's own test sets and compare with the expected outputs.

    Float models must match within rtol 1e-3 / atol 1e-4; int8 and QDQ models
    must agree on top-1 and stay within 10% of the output range. Exits 4 when a
    comparison fails.

    \b
    Examples:
      zoo check mnist-8
      zoo check mnist-8 --test-data ./mnist-8/
      zoo check resnet50 --all-providers
    """
    from zoo.errors import EXIT_CHECK_FAILED

    reports = []
    for name in names:
        note(api.locate(name, opset).note)
        if all_providers:
            reports.extend(api.check_providers(name, opset=opset, test_data=test_data))
        else:
            reports.append(api.load(name, opset=opset, providers=providers).check(test_data))
    if as_json:
        emit_json([r.to_dict() for r in reports])
    else:
        for report in reports:
            _print_check(report)
    if not reports:
        click.echo("no provider other than CPU is available to compare", err=True)
    if any(not r.passed for r in reports):
        sys.exit(EXIT_CHECK_FAILED)


def _print_check(report: Any) -> None:
    verdict = "PASS" if report.passed else "FAIL"
    click.echo(f"{report.model} on {report.provider} vs {report.against}: {verdict}")
    rows = [[c.set, c.output, c.mode, "-" if c.max_abs_diff is None else f"{c.max_abs_diff:.3g}",
             "-" if c.quant_steps is None else f"{c.quant_steps:g}",
             "-" if c.rank_correlation is None else f"{c.rank_correlation:.3f}",
             "-" if c.top1_expected is None else f"{c.top1_expected}/{c.top1_got}", "pass" if c.passed else "FAIL"]
            for c in report.checks]
    click.echo(table(rows, ["SET", "OUTPUT", "MODE", "MAX |DIFF|", "STEPS", "RANK RHO", "TOP1 EXP/GOT", "RESULT"]))
    for c in report.checks:
        for bound in c.failed:
            click.echo(f"  {c.set}/{c.output}: {bound}")


@click.command(epilog=EPILOG)
@click.argument("name")
@opset_option
@click.option("--provider", "providers", default=None, help="Execution provider(s), comma-separated, best first.")
@click.option("--batch", type=click.IntRange(min=1), default=1, help="Batch size where the model allows it.")
@click.option("--threads", type=click.IntRange(1, 1024), default=None, help="Intra-op threads (both sides).")
@click.option("--warmup", type=click.IntRange(min=0), default=5, help="Untimed runs first.")
@click.option("--runs", type=click.IntRange(min=1), default=50, help="Timed runs.")
@json_option
@handle_errors
def bench(name: str, opset: int | None, providers: str | None, batch: int, threads: int | None, warmup: int,
          runs: int, as_json: bool) -> None:
    """Time a model through zoo and through raw onnxruntime on identical inputs.

    Load time (cold and warm), latency p50/p90/p99, throughput and peak RSS;
    each side runs in its own fresh process.

    \b
    Example:
      zoo bench mobilenetv2-12-int8 --runs 100 --threads 2
    """
    from zoo import bench as engine
    from zoo.runtime import parse_providers

    located = api.locate(name, opset)
    note(located.note)
    if located.path is not None:
        path, model = located.path.resolve(), str(located.path.resolve())
    else:
        assert located.entry is not None  # locate() gives an entry whenever it gives no path
        path, model = api.pull_entry(located.entry)[0].path, located.entry.id
    chosen = parse_providers(providers)
    spec = engine.BenchSpec(model, str(path), None if chosen is None else tuple(chosen), batch, threads, warmup,
                            runs)
    result = engine.run(spec)
    if as_json:
        emit_json(result)
        return
    rows = []
    for key, label in (("load_cold_ms", "load, cold (ms)"), ("load_warm_ms", "load, warm (ms)"),
                       ("p50_ms", "latency p50 (ms)"), ("p90_ms", "latency p90 (ms)"), ("p99_ms", "latency p99 (ms)"),
                       ("throughput", "throughput (items/s)"), ("peak_rss_mb", "peak RSS (MB)")):
        ratio = result["ratio"][key]
        rows.append([label, f"{result['zoo'][key]:.2f}", f"{result['raw_onnxruntime'][key]:.2f}",
                     "-" if ratio is None else f"{ratio:.2f}"])
    ran = f"batch {result['batch']}" + (f" (asked for {batch}: {result['batch_note']})" if result["batch_note"] else "")
    click.echo(f"{model}: {ran}, {runs} runs after {warmup} warm-up, on {result['zoo']['provider']}")
    click.echo(table(rows, ["", "ZOO", "RAW ORT", "ZOO/RAW"]))

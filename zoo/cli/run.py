"""The `zoo predict`, `zoo check` and `zoo bench` commands: the ones that run models."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from zoo import api
from zoo.cli.output import EPILOG, emit_json, handle_errors, json_option, opset_option, table


@click.command(epilog=EPILOG)
@click.argument("model")
@click.argument("inputs", nargs=-1, required=True)
@opset_option
@click.option("--top-k", "topk", type=click.IntRange(min=1), default=None, help="How many classes to show (default: 5).")
@click.option("--score-threshold", type=click.FloatRange(0, 1), default=None,
              help="Minimum detection score (default: the model's recipe).")
@click.option("--provider", "providers", default=None,
              help="Execution provider(s), comma-separated, best first: cuda, tensorrt, openvino, cpu... "
                   "(default: ZOO_PROVIDERS, else the best available).")
@click.option("--strict-provider", is_flag=True, help="Fail instead of warning when a requested provider is not used.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Intra-op threads for onnxruntime.")
@click.option("--recipe", default=None, help="Preprocessing recipe for a local model: imagenet, caffe-bgr, inception.")
@click.option("--labels", "labels_file", default=None, help="Label set name or a file with one label per line.")
@click.option("--save", "save", type=click.Path(path_type=Path), default=None,
              help="Write the annotated image, segmentation overlay or output image (a folder for several inputs).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@click.option("--recursive", "-r", is_flag=True, help="Look for images in sub-folders of folder inputs too.")
@click.option("--glob", "pattern", default=None, help="Only files matching this pattern in folder inputs ('*.jpg').")
@click.option("--batch-size", type=click.IntRange(min=1), default=16,
              help="Images per run where the model has a batch axis (folder runs).")
@click.option("--output", "-o", type=click.Path(path_type=Path), default=None,
              help="Write one row per input to a .jsonl or .csv file, flushed as it goes.")
@click.option("--resume", is_flag=True, help="Skip inputs already in --output and append the rest.")
@click.option("--ray", "ray_address", is_flag=False, flag_value="local", default=None, metavar="[ADDRESS]",
              help="Run on Ray Data (zoo-client[ray]): bare --ray starts a local instance on 127.0.0.1; "
                   "--ray auto or --ray ray://HEAD:10001 joins a cluster.")
@json_option
@handle_errors
def predict(model: str, inputs: tuple[str, ...], opset: int | None, topk: int | None, score_threshold: float | None,
            providers: str | None, strict_provider: bool, threads: int | None, recipe: str | None,
            labels_file: str | None, save: Path | None, quiet: bool, recursive: bool, pattern: str | None,
            batch_size: int, output: Path | None, resume: bool, ray_address: str | None, as_json: bool) -> None:
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
    from zoo.pipeline import render

    if ray_address is not None:
        from zoo import ray as on_ray

        if save is not None:
            raise click.UsageError("--save does not combine with --ray; write rows with --output instead")
        on_ray.run_cli(model, batch.list_inputs(inputs, recursive=recursive, pattern=pattern), ray_address, output,
                       as_json, batch_size, topk, resume=resume, score_threshold=score_threshold, opset=opset,
                       providers=providers, recipe=recipe, labels=labels_file, threads=threads,
                       strict_provider=strict_provider)
        return
    streaming = output is not None or resume or any(Path(i).is_dir() for i in inputs)
    loaded = api.load(model, opset=opset, providers=providers, recipe=recipe, labels=labels_file, threads=threads,
                      strict_provider=strict_provider, progress=False if quiet else None,
                      spinning=False if streaming else None)
    if streaming:
        _predict_stream(loaded, inputs, recursive=recursive, pattern=pattern, batch_size=batch_size, output=output,
                        resume=resume, quiet=quiet, as_json=as_json, topk=topk, score_threshold=score_threshold)
        return
    results = loaded.predict(list(inputs), topk=topk, score_threshold=score_threshold)
    if as_json:
        emit_json([r.to_dict() for r in results])
    else:
        click.echo("\n\n".join(render.text(r) for r in results))
    if save is not None:
        _save_all(results, save)


def _predict_stream(loaded: Any, inputs: tuple[str, ...], *, recursive: bool, pattern: str | None,
                    batch_size: int, output: Path | None, resume: bool, quiet: bool, as_json: bool,
                    topk: int | None, score_threshold: float | None) -> None:
    """Folder mode: stream rows to --output (or stdout), with a progress bar and a summary."""
    import sys as _sys

    from tqdm import tqdm

    from zoo import batch
    from zoo.pipeline import render

    if resume and output is None:
        raise click.UsageError("--resume needs --output FILE (the rows already written there are skipped)")
    paths = batch.list_inputs(inputs, recursive=recursive, pattern=pattern)
    done = batch.done_inputs(output) if resume and output is not None else set()
    todo = [p for p in paths if p not in done]
    writer = batch.ResultWriter(output, append=resume) if output is not None else None
    failures = 0
    bar = tqdm(total=len(todo), unit="img", desc=loaded.name, file=_sys.stderr, mininterval=0.5,
               disable=quiet or not _sys.stderr.isatty())
    try:
        for result in loaded.predict_iter(todo, batch_size=batch_size, topk=topk, score_threshold=score_threshold):
            failures += isinstance(result, batch.Failure)
            if writer is not None:
                writer.write(result)
            elif as_json:
                click.echo(json.dumps(result.to_dict(), ensure_ascii=False))
            else:
                click.echo(render.text(result) if not isinstance(result, batch.Failure)
                           else f"{result.input}  error: {result.error}")
            bar.update(1)
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    skipped = f", {len(paths) - len(todo)} already in {output}" if done else ""
    click.echo(f"{len(todo) - failures} predicted, {failures} error rows{skipped}", err=True)


def _save_all(results: list[Any], out: Path) -> None:
    from zoo.pipeline import images, render

    for result in results:
        target = render.save_path(out, result, many=len(results) > 1)
        render.annotated(result, images.open_image(result.input)).save(target)
        click.echo(f"saved {target}", err=True)


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
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Intra-op threads (both sides).")
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

    path = Path(name) if name.endswith(".onnx") else api.pull(name, opset)
    model = str(path) if name.endswith(".onnx") else api.resolve(name, opset).id
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
    click.echo(f"{model}: batch {batch}, {runs} runs after {warmup} warm-up, on {result['zoo']['provider']}")
    click.echo(table(rows, ["", "ZOO", "RAW ORT", "ZOO/RAW"]))

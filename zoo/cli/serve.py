"""`zoo serve`: the HTTP server (Open Inference Protocol and zoo's image endpoint); needs zoo-client[serve]."""

from __future__ import annotations

import click

from zoo.cli.output import EPILOG, FiniteRange, echo_note, handle_errors


@click.command(epilog=EPILOG)
@click.argument("models", nargs=-1)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but loopback needs --token or --no-auth.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="0: any free port.")
@click.option("--max-batch", default=4, show_default=True, type=click.IntRange(1, 64),
              help="Most rows one session run takes (models with a dynamic batch axis). Up to it, each run "
                   "takes the smallest size within 10% of the least CPU per row measured on this machine's "
                   "runs (other sizes retried 1 run in 32).")
@click.option("--fill-batches", is_flag=True,
              help="Always run as many queued rows together as --max-batch allows, instead of the measured "
                   "choice.")
@click.option("--max-delay-ms", default=2.0, show_default=True, type=FiniteRange(0, 10_000),
              help="How long a request may wait for others to share its run.")
@click.option("--keep-alive", default="5m", show_default=True,
              help="Unload a model this long after its last request (30s, 5m, 1h, 0, forever).")
@click.option("--max-loaded", default=4, show_default=True, type=click.IntRange(1),
              help="Most models loaded at once; the least recently used idle one goes first.")
@click.option("--token", envvar="ZOO_SERVE_TOKEN", default=None,
              help="Require `Authorization: Bearer TOKEN` (or set ZOO_SERVE_TOKEN).")
@click.option("--no-auth", is_flag=True, help="Serve a non-loopback --host without a token.")
@click.option("--threads", type=click.IntRange(1, 1024), default=None,
              help="Intra-op threads per session run [default: the cores shared among the --concurrency runs].")
@click.option("--provider", default=None, help="Execution provider(s), e.g. cuda or openvino,cpu.")
@click.option("--max-body", default="64MB", show_default=True, help="Largest request body.")
@click.option("--body-timeout", default="30s", show_default=True,
              help="Answer 408 when a request's body stops arriving for this long, or its headers take "
                   "longer (forever: never).")
@click.option("--concurrency", default=2, show_default=True, type=click.IntRange(1, 16),
              help="Session runs in flight per model. Several narrow runs give the most requests/s under "
                   "load; a run that has the cores alone (one client at a time) uses the threads of all of "
                   "them, on a second session of models up to 256 MiB. Runs that fill the cores one thread "
                   "each keep to a core each.")
@handle_errors
def serve(models: tuple[str, ...], host: str, port: int, max_batch: int, fill_batches: bool, max_delay_ms: float,
          keep_alive: str, max_loaded: int, token: str | None, no_auth: bool, threads: int | None,
          provider: str | None, max_body: str, body_timeout: str, concurrency: int) -> None:
    """Serve zoo models over HTTP: the Open Inference Protocol (KServe v2, Triton clients) and an image endpoint.

    MODELs named here are pulled and loaded before the server reports ready (one that
    fails to load stops it, exit 2); any other zoo model loads on its first request.
    GET /docs lists the routes.

    \b
    Examples:
      zoo serve mobilenetv2-12-int8
      curl --data-binary @frog.jpg localhost:8000/v1/models/mobilenetv2-12-int8/predict
      zoo serve resnet50 --host 0.0.0.0 --token "$SECRET"
    """
    try:  # heavy and optional: only this command needs them
        from zoo.serve import auth, main
        from zoo.serve.models import PoolConfig
        from zoo.serve.state import ServeConfig
    except ImportError as exc:
        from zoo.errors import ZooError

        raise ZooError(f"zoo serve needs the serve extra ({exc.name} is missing)",
                       hint="pip install 'zoo-client[serve]'") from None
    access = auth.decide(host, token, no_auth=no_auth)
    pool = PoolConfig(max_batch=max_batch, adapt_batch=not fill_batches, max_delay=max_delay_ms / 1000,
                      keep_alive=main.parse_duration(keep_alive),
                      max_loaded=max_loaded, slots=concurrency, threads=threads, providers=provider)
    limit = main.parse_size(max_body)
    stall = main.parse_duration(body_timeout, "--body-timeout")
    if stall == 0:
        from zoo.errors import ZooError

        raise ZooError("--body-timeout must be more than 0", hint="e.g. 30s, or forever to never time out")
    sock = main.bind(host, port)  # before the pulls: a taken port fails at once
    keys, files = main.prepare_models(models)
    if len(keys) > max_loaded:
        raise click.UsageError(f"{len(keys)} models named, but --max-loaded is {max_loaded}")
    url = main.url_of(sock)
    echo_note(f"zoo serve: listening on {url} ({'loading ' + ', '.join(models) if models else 'no models loaded yet'})")
    echo_note(f"zoo serve: {access.notice}")
    echo_note(f"zoo serve: API at {url}/docs; ready at {url}/v2/health/ready; SIGTERM drains and stops")
    main.run(ServeConfig(pool=pool, startup=keys, files=files, token=access.token, max_body=limit,
                         body_timeout=stall), sock)

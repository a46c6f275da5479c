"""Folder prediction on Ray (the optional `zoo-client[ray]` extra), built on Ray Data.

`predict_dataset()` maps a Ray Dataset of image paths to result rows with a pool
of actors; each actor loads the model once through `zoo.load`, so every node
gets its bytes through the same verified cache (its ZOO_HOME, filled from
ZOO_MIRROR or Hugging Face) and gives the rows `Model.predict_iter` gives on
one machine. `predict_paths()` is the list-in, list-out form, in input order.

Ray is imported inside the functions that use it: `import zoo` and `zoo.cli`
must never pay for it, nor fail where the extra is not installed.
"""

from __future__ import annotations

import inspect
import itertools
import json
import logging
import os
import socket
import sys
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from zoo.errors import ZooError

if TYPE_CHECKING:
    import pyarrow
    import ray.data

INSTALL_HINT = "pip install 'zoo-client[ray]'"
# Result columns: Prediction.to_dict() / Failure.to_dict() flattened, predictions as a JSON string,
# because Arrow blocks need one type per column and predictions differ by task.
COLUMNS = ("input", "model", "provider", "task", "predictions", "error", "hint")
ERROR_MARK = "zoo-error-facts: "  # see _RemoteError
_REMOTE = "in a Ray actor: "
INDEX = "index"  # carried through untouched when the input has it; predict_paths orders by it
# Zoo settings the driver forwards to its actors (runtime_env env_vars) unless env= says otherwise.
# HF_TOKEN is left out on purpose: runtime_env is visible in the Ray dashboard and job metadata.
FORWARDED_ENV = ("ZOO_HOME", "ZOO_MIRROR", "ZOO_MANIFESTS", "ZOO_OFFLINE", "ZOO_PROVIDERS", "ZOO_HF_CACHE",
                 "HF_ENDPOINT", "HF_HUB_OFFLINE")


def predict_dataset(model_name: str, dataset: ray.data.Dataset, *, column: str = "path", batch_size: int = 16,
                    concurrency: int = 2, num_cpus_per_actor: float = 1, opset: int | None = None,
                    providers: str | Sequence[str] | None = None, topk: int | None = None,
                    score_threshold: float | None = None, env: Mapping[str, str] | None = None,
                    **load_kwargs: Any) -> ray.data.Dataset:
    """A Dataset of result rows (columns COLUMNS, plus `index` when `dataset` has one), one per path.

    `concurrency` actors each reserve `num_cpus_per_actor` CPUs and load the model once;
    onnxruntime gets that many threads unless `threads=` says otherwise. `env` is set in
    every actor (default: the FORWARDED_ENV variables set here); pass {} to rely on each
    node's own environment. Lazy, like every Dataset: nothing runs until it is consumed.
    """
    ray = _import_ray()
    _check_name(model_name, opset)  # an unknown name fails here, not in every actor
    threads = load_kwargs.pop("threads", None) or max(1, int(num_cpus_per_actor))
    load_kwargs = {"opset": opset, "providers": providers, "threads": threads, **load_kwargs}
    constructor = {"model_name": model_name, "column": column, "batch_size": batch_size, "workers": threads,
                   "topk": topk, "score_threshold": score_threshold, "load_kwargs": load_kwargs}
    env = forwarded_env() if env is None else dict(env)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Ray >= 2.60 deprecates max_restarts= here
        return dataset.map_batches(
            _Predictor, fn_constructor_kwargs=constructor, batch_size=batch_size, batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=concurrency), num_cpus=num_cpus_per_actor,
            runtime_env={"env_vars": env} if env else None, **_no_restarts(dataset.map_batches),
        )


def _no_restarts(map_batches: Any) -> dict[str, int]:
    """max_restarts=0 where map_batches still takes Ray remote args (removed in Ray 2.64).

    Ray Data keeps an actor's constructor in the object store, and Ray logs an ERROR for
    every such actor that may restart (its arguments could be gone by then). Without
    restarts a dead actor fails the run instead; rows are written as they arrive, so
    `--resume` picks up where it stopped.
    """
    takes_any = any(p.kind is p.VAR_KEYWORD for p in inspect.signature(map_batches).parameters.values())
    return {"max_restarts": 0} if takes_any else {}


def predict_paths(model_name: str, paths: Iterable[str | Path], *, address: str | None = None,
                  **kwargs: Any) -> list[dict[str, Any]]:
    """Result dicts (as Prediction.to_dict() / Failure.to_dict()) for `paths`, in input order.

    `address` is as for connect(): None (Ray's default), "local" (a new local instance on
    127.0.0.1), "auto" or "ray://host:10001" (a cluster). Other keywords go to predict_dataset.
    """
    return list(iter_paths(model_name, paths, address=address, **kwargs))


def iter_paths(model_name: str, paths: Iterable[str | Path], *, address: str | None = None,
               **kwargs: Any) -> Iterator[dict[str, Any]]:
    """predict_paths as a stream: each row as soon as every row before it has arrived."""
    _check_name(model_name, kwargs.get("opset"))  # before Ray spends seconds starting
    ray = connect(address)
    items: list[dict[str, Any]] = [{"path": str(p), INDEX: i} for i, p in enumerate(paths)]
    if not items:
        return
    if ray.util.client.ray.is_connected():
        yield from _iter_through_client(ray, model_name, [item["path"] for item in items], kwargs)
        return
    quiet_ray_data(ray)
    dataset = predict_dataset(model_name, ray.data.from_items(items), **kwargs)
    # Actors finish batches out of order; hold early rows until the gap before them closes.
    waiting: dict[int, dict[str, Any]] = {}
    next_index = 0
    with _unwrapped_errors():
        for row in dataset.iter_rows():
            waiting[row[INDEX]] = row
            while next_index in waiting:
                yield unflatten(waiting.pop(next_index))
                next_index += 1
    if next_index != len(items):
        raise ZooError(f"Ray returned {next_index} of {len(items)} rows in order; row {next_index} is missing",
                       hint="rerun; if it persists, rerun with ZOO_DEBUG=1 and report it")


def _iter_through_client(ray: Any, model_name: str, paths: list[str],
                         kwargs: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Rows from a cluster reached over Ray Client (ray://), where Ray Data cannot drive a pipeline.

    Ray Data needs a driver with a core worker, which a Ray Client session lacks
    (ray-project/ray#48682), and Ray Client has no streaming generators, so an actor on the
    cluster drives the pipeline and hands its rows out in chunks. The env forwarded to the
    prediction actors is this machine's, not the driving actor's node's.
    """
    driver = ray.remote(num_cpus=0)(_Driver).remote(model_name, paths, {"env": forwarded_env(), **kwargs})
    try:
        with _unwrapped_errors():
            while chunk := ray.get(driver.next_chunk.remote()):
                yield from chunk
    finally:
        ray.kill(driver)


class _Driver:
    """Ray Client only: runs iter_paths on the cluster and hands out its rows in order, in chunks."""

    def __init__(self, model_name: str, paths: list[str], kwargs: dict[str, Any]) -> None:
        self.rows = iter_paths(model_name, paths, **kwargs)

    def next_chunk(self, size: int = 64) -> list[dict[str, Any]]:
        with _portable_errors():
            return list(itertools.islice(self.rows, size))


def connect(address: str | None) -> Any:
    """Join Ray unless this process already has; returns the ray module.

    `address` as ray.init takes it: None finds a running instance (RAY_ADDRESS, then the
    last `ray start` on this machine) or starts one; "auto" must find one; "ray://host:10001"
    is a remote cluster; "local" always starts a new local instance, listening on 127.0.0.1
    only. (On Linux, Ray binds its GCS and raylets to every interface unless it was imported
    with RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, which it reads once, at import;
    ray.init(_node_ip_address="127.0.0.1") does not help: it swaps loopback for the machine's
    address.)
    """
    if address not in (None, "local", "auto") and Path(address).exists():
        raise ZooError(f"{address!r} was taken as the Ray address, but it is a file or folder",
                       hint="put --ray after the inputs, or give it an address: --ray local, --ray auto")
    if address == "local" and "ray" not in sys.modules:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    ray = _import_ray()
    if ray.is_initialized():
        return ray
    if address is not None and address.startswith("ray://"):
        check_client_server(address)
    # ray.init warns that it set no SIGTERM handler when called off the main thread, as the CLI's
    # row writer calls it; the process still ends on SIGTERM, so the warning is only noise.
    worker_log = logging.getLogger("ray._private.worker")
    worker_log.addFilter(_drop_sigterm_note)
    try:
        # WARNING: no "Started a local Ray instance." nor "Passing the following kwargs ..." lines.
        # log_to_driver=False: no worker or GCS log lines on this terminal (such as the GCS's ERROR
        # when a local instance shuts down under load); an actor's failure still arrives as an
        # exception with its text (_unwrapped_errors), and the logs stay in the session's logs folder.
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    except (ConnectionError, RuntimeError) as exc:
        if address is not None and address.startswith("ray://"):
            raise ZooError(f"a Ray Client server answers at {address}, but connecting failed: {exc}",
                           hint=f"the head must run Ray {ray.__version__} on Python {_python()}, as here; its "
                                "log is ray_client_server*.log under /tmp/ray/session_latest/logs") from None
        raise ZooError(f"cannot reach a Ray cluster at {address!r}: {exc}",
                       hint="start one with `ray start --head`, pass its address (ray://HEAD:10001), "
                            "or use --ray alone for a local instance") from None
    finally:
        worker_log.removeFilter(_drop_sigterm_note)
    return ray


def _drop_sigterm_note(record: logging.LogRecord) -> bool:
    return "SIGTERM handler is not set" not in record.getMessage()


CLIENT_PORT = 10001  # Ray Client's default port (`ray start --head --ray-client-server-port`)
HANDSHAKE_TIMEOUT = 3.0  # seconds for a reachable server to answer as gRPC; Ray's own retries take 30 s


def check_client_server(address: str) -> None:
    """Fail within seconds, naming the reason, unless a gRPC server answers at ray://HOST[:PORT].

    Ray Client retries for about 30 s (5 + 10 + 15) before saying only "connection
    timeout", whether nothing listens or something that is not Ray Client does.
    """
    try:
        parts = urlsplit(address)
        host, port = parts.hostname, parts.port or CLIENT_PORT
    except ValueError as exc:  # a port that is not a number, a bracketed host that is no IPv6 address
        raise ZooError(f"bad Ray address {address!r}: {exc}", hint="use ray://HOST:10001") from None
    if not host:
        raise ZooError(f"bad Ray address {address!r}: no host", hint="use ray://HOST:10001")
    try:
        socket.create_connection((host, port), timeout=HANDSHAKE_TIMEOUT).close()
    except OSError as exc:
        reason = "nothing listens there (connection refused)" if isinstance(exc, ConnectionRefusedError) else exc
        raise ZooError(f"cannot reach a Ray Client server at {host}:{port}: {reason}",
                       hint=f"on the head, `ray start --head` serves Ray Client on port {CLIENT_PORT}; check the "
                            "address and that the port is open to this machine, or use --ray local") from None
    import grpc  # type: ignore[import-untyped, import-not-found, unused-ignore]

    channel = grpc.insecure_channel(f"{host}:{port}")
    try:
        grpc.channel_ready_future(channel).result(timeout=HANDSHAKE_TIMEOUT)
    except grpc.FutureTimeoutError:
        raise ZooError(f"{host}:{port} accepts connections but does not answer as a Ray Client (gRPC) server "
                       f"within {HANDSHAKE_TIMEOUT:.0f} s",
                       hint=f"is it the head's Ray Client port ({CLIENT_PORT} unless --ray-client-server-port "
                            "said otherwise), and not the GCS port (6379) or the dashboard?") from None
    finally:
        channel.close()


def quiet_ray_data(ray: Any) -> None:
    """Turn off Ray Data's progress bars and INFO lines in this process; zoo counts the rows itself.

    Over ray:// they ran in the driving actor, were forwarded to the terminal, and counted
    blocks of the actor's own pipeline, not the inputs the user gave.
    """
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    # ... and its WARNING that the bars are off, which is what was asked for.
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)


def _python() -> str:
    return ".".join(map(str, sys.version_info[:2]))


def forwarded_env() -> dict[str, str]:
    """The FORWARDED_ENV variables set in this process."""
    return {name: os.environ[name] for name in FORWARDED_ENV if os.environ.get(name)}


def flatten(result: Any) -> dict[str, Any]:
    """One flat row from a Prediction or Failure."""
    d = result.to_dict()
    preds = json.dumps(d["predictions"], ensure_ascii=False) if "predictions" in d else None
    return {"input": d["input"], "model": d["model"], "provider": d.get("provider"), "task": d.get("task"),
            "predictions": preds, "error": d.get("error"), "hint": d.get("hint")}


def unflatten(row: Mapping[str, Any]) -> dict[str, Any]:
    """The to_dict() form of a flat row (JSON floats round-trip exactly)."""
    if row["error"] is not None:
        failed = {"input": row["input"], "model": row["model"], "error": row["error"]}
        return failed | ({"hint": row["hint"]} if row.get("hint") else {})
    return {"input": row["input"], "model": row["model"], "provider": row["provider"], "task": row["task"],
            "predictions": json.loads(row["predictions"])}


class _Predictor:
    """One actor: loads the model once, then runs predict_iter on each batch of paths."""

    def __init__(self, model_name: str, *, column: str, batch_size: int, workers: int, topk: int | None,
                 score_threshold: float | None, load_kwargs: dict[str, Any]) -> None:
        from zoo.api import load

        # A load error is kept and raised by the first batch: Ray Data reports a failed constructor
        # as an ActorDiedError that blames Ray's own code, a failed batch as the user error it is.
        self.model, self.load_error = None, None
        try:
            self.model = load(model_name, progress=False, **load_kwargs)
        except ZooError as exc:
            self.load_error = _RemoteError.of(exc)
        self.column, self.batch_size, self.workers = column, batch_size, workers
        self.topk, self.score_threshold = topk, score_threshold

    def __call__(self, batch: pyarrow.Table) -> pyarrow.Table:
        import pyarrow as pa

        if self.load_error is not None or self.model is None:
            raise self.load_error or ZooError("the model was not loaded in this actor")
        paths = batch.column(self.column).to_pylist()
        with _portable_errors():
            rows = [flatten(r) for r in self.model.predict_iter(paths, batch_size=self.batch_size,
                                                                workers=self.workers, topk=self.topk,
                                                                score_threshold=self.score_threshold)]
        table = {name: pa.array([r[name] for r in rows], type=pa.string()) for name in COLUMNS}
        if INDEX in batch.column_names:
            table[INDEX] = batch.column(INDEX)
        return pa.table(table)


def _import_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise ZooError(f"Ray is not installed here ({exc})",
                       hint=f"install the extra: {INSTALL_HINT}, on this machine and on every node") from None
    return ray


def _check_name(model_name: str, opset: int | None) -> None:
    if not _is_local_file(model_name):
        from zoo.api import resolve

        resolve(model_name, opset)


def _is_local_file(name: str) -> bool:
    return name.endswith(".onnx") or Path(name).expanduser().is_file()


class _RemoteError(ZooError):
    """A ZooError raised in an actor, with its facts in its text as one JSON line.

    Ray Data hands the driver only the worker's traceback as text (UserCodeException,
    ActorDiedError), never the exception object; that line lets the driver raise the same
    message, hint and exit code.
    """

    def __init__(self, what: str, hint: str | None, exit_code: int) -> None:
        super().__init__(what, hint=hint)
        self.exit_code = exit_code

    @classmethod
    def of(cls, exc: ZooError) -> _RemoteError:
        return cls(exc.what, exc.hint, exc.exit_code)

    def __str__(self) -> str:
        facts = {"what": self.what, "hint": self.hint, "exit_code": self.exit_code}
        return f"{self.message}\n{ERROR_MARK}{json.dumps(facts)}"


def _found_error(text: str) -> ZooError | None:
    """The ZooError whose facts an actor wrote into `text`, if any."""
    start = text.find(ERROR_MARK)
    if start < 0:
        return None
    line = text[start + len(ERROR_MARK):].split("\n", 1)[0]
    try:
        facts = json.loads(line)
        what = facts["what"] if facts["what"].startswith(_REMOTE) else _REMOTE + facts["what"]
        error = ZooError(what, hint=facts["hint"])
        error.exit_code = int(facts["exit_code"])
    except (ValueError, KeyError, TypeError):
        return None
    return error


@contextmanager
def _portable_errors() -> Iterator[None]:
    try:
        yield
    except ZooError as exc:
        raise _RemoteError.of(exc) from None


@contextmanager
def _unwrapped_errors() -> Iterator[None]:
    """Re-raise an actor's ZooError as a ZooError, not as the Ray exception that wraps its text."""
    try:
        yield
    except ZooError:
        raise
    except Exception as exc:
        error = _found_error(str(exc))
        if error is None:
            raise
        raise error from exc

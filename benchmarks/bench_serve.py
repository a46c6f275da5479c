"""zoo serve: requests/s and p50/p99 at concurrency 1, 8, 32, against the in-process ceiling and a plain server.

Every system answers the same question: the OIP binary infer of one preprocessed image
(zoo's own preprocessing of 14 photos, round robin), top output returned.

- zoo: `zoo serve MODEL --threads 1 --concurrency 2` (2 session runs of 1 intra-op thread in
  flight: the 2-core budget; dynamic batching on batchable models), over HTTP.
- ceiling: raw onnxruntime in this process on the same tensors within the same 2-thread budget,
  no HTTP: the best of C threads each running single images on a 2-thread session, one thread
  running batches of C on it, and zoo's own arrangement (2 threads on a 1-thread session, single
  images or batches of C/2, left to the scheduler or each kept to a core as zoo serve keeps them)
  — what the hardware gives with no server at all.
- bare: the cheapest exchange uvicorn allows (read the body, answer a constant; malloc told to keep
  freed memory, so that the 600 kB bodies do not page-fault fresh pages in each time), for the limit
  any HTTP server meets on these cores: the ceiling scaled by its CPU per image over that plus a bare request's.
- plain: a minimal hand-written Starlette + uvicorn + onnxruntime server doing the same
  work without batching (one session.run per request, in Starlette's thread pool, a 2-thread session).
- lean: zoo serve's arrangement with nothing else: a bare ASGI app on uvicorn that hands each request
  through a queue to SLOTS worker threads, each kept to a core of its own and running a 1-thread
  session; no framework, checks, batching, metrics or access log. What that arrangement reaches here
  bounds what zoo's own layers can add to it.
- fastapi: the same handler on FastAPI, the issue's baseline, when fastapi is installed (it is no
  dependency of zoo's; `pip install fastapi`); FastAPI runs on Starlette, so plain is the stricter one.

Clients are C threads with one keep-alive connection each, sending the same prebuilt request
bytes to both servers; they share the machine's cores with the server, as a sidecar would, unless
`--client-cores CPUS` pins them to cores of their own (on a machine with more cores than the
THREADS budget; the servers and the ceiling keep the others).
Both servers run at once, each in its own process (the idle one costs nothing), and the three
systems take turns in short windows, `reps` times, so that a busy machine's swings hit all of
them alike; the figures are medians over the windows (5: with 3, the key ratio ranged 0.67-0.85
over three runs of one build), and the rows against the ceiling also give zoo's rate over the
ceiling's best window by window.
`python -m benchmarks.bench_serve [--smoke] [--reps N]` runs it alone; `run(cfg)` gives the suite's rows.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks._common import (
    IMAGES,
    INFO,
    MODELS,
    REPO,
    Config,
    Row,
    compare,
    need,
    ratio_at_least,
    scratch,
    seeded_home,
)

BATCHED, FIXED = "mobilenetv2-12-int8", "shufflenet-v2-12-int8"
LEVELS = (1, 8, 32)
THREADS = 2  # the core budget every system gets
SLOTS = 2  # zoo serve's runs in flight, THREADS // SLOTS intra-op threads each
REPS = 5  # interleaved windows per system and level
CLIENT_CORES: frozenset[int] | None = None  # --client-cores: where the load generator runs (None: anywhere)


def tensors(model_id: str) -> list[Any]:
    """zoo's preprocessing of every photo in ../shared (the same tensors for every system)."""
    import zoo

    model = zoo.load(model_id, threads=THREADS)
    photos = sorted(p for p in need(IMAGES).iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    return [model.preprocess(str(p))["input"] for p in photos]


def body_of(tensor: Any) -> tuple[bytes, dict[str, str]]:
    head = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": list(tensor.shape),
                                   "parameters": {"binary_data_size": tensor.nbytes}}],
                       "outputs": [{"name": "output", "parameters": {"binary_data": True}}]}).encode()
    return head + tensor.tobytes(), {"Inference-Header-Content-Length": str(len(head)),
                                     "Content-Type": "application/octet-stream"}


def load(port: int, path: str, bodies: list[tuple[bytes, dict[str, str]]], clients: int,
         seconds: float) -> tuple[float, list[float]]:
    """Drive `clients` threads against the server for `seconds`; (requests/s, latencies).

    Each thread keeps one keep-alive connection and sends requests built once, byte for byte:
    a load generator's own CPU is taken from the server's cores, so it does no per-request
    work beyond the socket calls and finding the response's end (as wrk does).
    """
    requests = [_request_bytes(port, path, body, headers) for body, headers in bodies]
    stop = time.perf_counter() + seconds
    lock, latencies = threading.Lock(), []

    def client(i: int) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=60) as conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            n, mine, pending = i, [], b""
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                conn.sendall(requests[n % len(requests)])
                pending = _read_response(conn, pending, path)
                mine.append(time.perf_counter() - t0)
                n += clients
        with lock:
            latencies.extend(mine)

    started = time.perf_counter()
    with pinned(CLIENT_CORES), ThreadPoolExecutor(clients) as pool:  # its threads inherit the pinning
        list(pool.map(client, range(clients)))
    return len(latencies) / (time.perf_counter() - started), latencies


@contextlib.contextmanager
def pinned(cores: frozenset[int] | None) -> Iterator[None]:
    """Run the calling thread, and the threads it starts meanwhile, on `cores` only (None: as it was)."""
    if cores is None:
        yield
        return
    before = os.sched_getaffinity(0)  # 0: the calling thread
    os.sched_setaffinity(0, cores)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def parse_cores(text: str) -> frozenset[int]:
    """`2-7,9` -> {2, ..., 7, 9}; refused unless every core is this process's and THREADS others are left."""
    cores: set[int] = set()
    for part in text.split(","):
        first, dash, last = part.strip().partition("-")
        if not first.isdigit() or (dash and not last.isdigit()):
            raise argparse.ArgumentTypeError(f"{text!r} is not a core list such as 2-7 or 2,3")
        cores.update(range(int(first), int(last or first) + 1))
    mine = os.sched_getaffinity(0)
    if not cores <= mine:
        raise argparse.ArgumentTypeError(f"cores {sorted(cores - mine)} are not this process's ({sorted(mine)})")
    if len(mine - cores) < THREADS:
        raise argparse.ArgumentTypeError(f"the servers need {THREADS} cores the clients do not use; "
                                         f"this process has {len(mine)}")
    return frozenset(cores)


def _request_bytes(port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", f"Content-Length: {len(body)}",
             *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _read_response(conn: socket.socket, pending: bytes, path: str) -> bytes:
    """Read one response (the servers always send Content-Length); returns what came after it."""
    data = pending
    while (end := data.find(b"\r\n\r\n")) < 0:
        data += _recv(conn)
    head = data[:end].lower()
    if not head.startswith(b"http/1.1 200"):
        raise RuntimeError(f"{path}: {head[:40].decode(errors='replace')}")
    at = head.index(b"\r\ncontent-length:") + len(b"\r\ncontent-length:")  # not Inference-Header-Content-Length
    line_end = head.find(b"\r\n", at)
    total = end + 4 + int(head[at:line_end if line_end >= 0 else None])
    while len(data) < total:
        data += _recv(conn)
    return data[total:]


def _recv(conn: socket.socket) -> bytes:
    chunk = conn.recv(65536)
    if not chunk:
        raise RuntimeError("the server closed the connection")
    return chunk


def ceiling(model_id: str, feeds: list[Any], clients: int, seconds: float,
            batchable: bool) -> dict[str, tuple[float, float]]:
    """Raw onnxruntime in-process: (images/s, CPU s per image) of each arrangement of the THREADS budget."""
    wide, narrow = _session(model_id, THREADS, feeds[0]), _session(model_id, THREADS // SLOTS, feeds[0])
    found = {f"{clients} thread(s) of singles": _drive(wide, feeds, clients, 1, seconds),
             f"{min(clients, SLOTS)} thread(s) of singles, 1-thread session": _drive(narrow, feeds,
                                                                                   min(clients, SLOTS), 1, seconds)}
    if clients > 1:  # zoo's arrangement as zoo serve keeps it: each thread on a core of its own
        found[f"{SLOTS} pinned threads of singles, 1-thread session"] = _drive(narrow, feeds, SLOTS, 1, seconds,
                                                                              pin=True)
    if batchable and clients > 1:
        found[f"batches of {min(clients, 16)}"] = _drive(wide, feeds, 1, min(clients, 16), seconds)
        rows = min(-(-clients // SLOTS), 16)
        found[f"{SLOTS} threads of batches of {rows}, 1-thread session"] = _drive(narrow, feeds, SLOTS, rows, seconds)
        found[f"{SLOTS} pinned threads of batches of {rows}, 1-thread session"] = _drive(narrow, feeds, SLOTS, rows,
                                                                                        seconds, pin=True)
    return found


def _session(model_id: str, threads: int, feed: Any) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")  # as zoo serve's sessions
    so.add_session_config_entry("session.x64quantprecision", "1")  # exact int8 products, as zoo's sessions
    session = ort.InferenceSession(str(MODELS / f"{model_id}.onnx"), so, providers=["CPUExecutionProvider"])
    session.run(None, {"input": feed})
    return session


def _drive(session: Any, feeds: list[Any], workers: int, rows: int, seconds: float,
           pin: bool = False) -> tuple[float, float]:
    """(images/s, CPU seconds per image) of `workers` threads each running batches of `rows` images for `seconds`.

    `pin`: worker i keeps to the i-th of the servers' cores (those the clients are not pinned to).
    """
    import numpy as np

    batches = [np.concatenate([feeds[(i + j) % len(feeds)] for j in range(rows)]) for i in range(len(feeds))]
    stop, counts = time.perf_counter() + seconds, [0] * workers
    cores = sorted(os.sched_getaffinity(0) - (CLIENT_CORES or frozenset()))

    def worker(i: int) -> None:
        n = i
        with pinned(frozenset({cores[i % len(cores)]}) if pin else None):
            while time.perf_counter() < stop:
                session.run(None, {"input": batches[n % len(batches)]})
                counts[i] += rows
                n += workers

    started, cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(worker, range(workers)))
    return sum(counts) / (time.perf_counter() - started), (time.process_time() - cpu) / max(1, sum(counts))


def cpu_split(pid: int) -> tuple[float, float]:
    """CPU seconds (user + sys) of a process so far: its main thread (the event loop), and its other threads.

    The process's own line counts the threads that have ended too (a framework's thread pool
    lets idle threads go): the others are that total less the main thread's.
    """
    def used(stat: str) -> float:
        fields = Path(stat).read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    loop = used(f"/proc/{pid}/task/{pid}/stat")
    return loop, used(f"/proc/{pid}/stat") - loop


def accounted(pid: int, drive: Callable[[], tuple[float, list[float]]]) -> tuple[float, list[float], tuple[float, ...]]:
    """`drive()`'s (requests/s, latencies) and the CPU seconds per request it cost: (event loop, other
    server threads, clients). The clients' CPU is this process's: nothing else runs in it meanwhile."""
    loop0, rest0 = cpu_split(pid)
    client0 = time.process_time()
    rate, latencies = drive()
    loop1, rest1 = cpu_split(pid)
    n = max(1, len(latencies))
    return rate, latencies, ((loop1 - loop0) / n, (rest1 - rest0) / n, (time.process_time() - client0) / n)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(argv: list[str], port: int, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start a server and wait until it is ready; with --client-cores, it keeps off the clients' cores."""
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=log.open("ab"))
    if CLIENT_CORES:  # before the server starts its threads, which inherit it
        with contextlib.suppress(OSError):
            os.sched_setaffinity(proc.pid, os.sched_getaffinity(0) - CLIENT_CORES)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/v2/health/ready")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"server did not start: {argv}: {log.read_text()[-500:]}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(30)


def measure(model_id: str, cfg: Config, home: Path) -> dict[Any, Any]:
    """Per level: zoo's and plain's (req/s, latencies) and the ceiling's arrangements, medians over the windows."""
    feeds = tensors(model_id)
    bodies = [body_of(t) for t in feeds]
    seconds, reps = cfg.pick(1.5, 0.4), cfg.pick(REPS, 1)
    env = {**os.environ, "ZOO_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    servers = ("zoo", "lean", "plain", "fastapi") if has_fastapi() else ("zoo", "lean", "plain")
    ports = {name: free_port() for name in (*servers, "bare")}
    argv = {"zoo": [sys.executable, "-m", "zoo", "serve", model_id, "--port", str(ports["zoo"]),
                    "--threads", str(THREADS // SLOTS), "--concurrency", str(SLOTS)],
            "plain": [sys.executable, "-m", "benchmarks.bench_serve", "--plain-server",
                      str(MODELS / f"{model_id}.onnx"), str(ports["plain"])],
            "lean": [sys.executable, "-m", "benchmarks.bench_serve", "--lean-server",
                     str(MODELS / f"{model_id}.onnx"), str(ports["lean"])],
            "bare": [sys.executable, "-m", "benchmarks.bench_serve", "--bare-server", str(ports["bare"])]}
    if "fastapi" in ports:
        argv["fastapi"] = [*argv["plain"][:3], "--fastapi-server", str(MODELS / f"{model_id}.onnx"),
                           str(ports["fastapi"])]
    procs = {}
    path = f"/v2/models/{model_id}/infer"
    out: dict[Any, Any] = {}
    try:
        for system in (*servers, "bare"):
            procs[system] = start(argv[system], ports[system], env, home / f"{system}.log")
            load(ports[system], path, bodies, 4, cfg.pick(1.0, 0.2))  # warm-up
        for clients in LEVELS:
            windows: dict[str, list[Any]] = {name: [] for name in (*servers, "ceiling")}
            for rep in range(reps):
                turn = (*servers, "ceiling")
                for system in turn if rep % 2 == 0 else reversed(turn):
                    windows[system].append(
                        ceiling(model_id, feeds, clients, seconds, model_id == BATCHED) if system == "ceiling"
                        else accounted(procs[system].pid,
                                       functools.partial(load, ports[system], path, bodies, clients, seconds)))
            for system in servers:
                got = windows[system]
                out[(system, clients)] = (statistics.median(w[0] for w in got), [x for w in got for x in w[1]],
                                          tuple(statistics.median(w[2][i] for w in got) for i in range(3)))
            out[("ceiling", clients)] = {name: (statistics.median(w[name][0] for w in windows["ceiling"]),
                                                statistics.median(w[name][1] for w in windows["ceiling"]))
                                         for name in windows["ceiling"][0]}
            out[("windows", clients)] = reps
            out[("paired", clients)] = [zoo[0] / max(found.values())[0]  # zoo / the ceiling's best, window by window
                                        for zoo, found in zip(windows["zoo"], windows["ceiling"])]
            out[("bare", clients)] = accounted(procs["bare"].pid,
                                               functools.partial(load, ports["bare"], path, bodies, clients, seconds))
    finally:
        for proc in procs.values():
            stop(proc)
    return out


def rows_of(model_id: str, found: dict[Any, Any]) -> list[Row]:
    rows = []
    for clients in LEVELS:
        rate, lat, cpu = found[("zoo", clients)]
        plain_rate, plain_lat, plain_cpu = found[("plain", clients)]
        arrangements: dict[str, tuple[float, float]] = found[("ceiling", clients)]
        best, best_cpu = max(arrangements.values())
        where = ("clients on their own cores " + ",".join(map(str, sorted(CLIENT_CORES))) + "; "
                 if CLIENT_CORES else "clients on the same cores; ")
        notes = (f"{where}medians of {found[('windows', clients)]} interleaved windows; zoo p50 {pct(lat, 50)} p99 "
                 f"{pct(lat, 99)}; plain server {plain_rate:.1f} req/s, p50 {pct(plain_lat, 50)} p99 "
                 f"{pct(plain_lat, 99)}; ceiling (img/s): "
                 + ", ".join(f"{name} {value:.1f}" for name, (value, _) in arrangements.items())
                 + f"; CPU ms per request (event loop + session threads + clients): zoo {_split(cpu)}, plain "
                 f"{_split(plain_cpu)}; the ceiling's best: {1000 * best_cpu:.2f} per image, no HTTP, no client")
        key_row = model_id == BATCHED and clients == 8  # the targets: >= 0.8x ceiling, ahead of plain
        paired = ", ".join(f"{r:.2f}" for r in found[("paired", clients)])
        rows.append(compare(f"serve {model_id}, concurrency {clients}: zoo vs in-process ceiling", rate, best, _rps,
                            ratio_at_least(0.8) if key_row else INFO,
                            f"{notes}; zoo / the ceiling's best window by window: {paired}"))
        bare_cpu = found[("bare", clients)][2]
        limit = best * best_cpu / (best_cpu + bare_cpu[0] + bare_cpu[1] + bare_cpu[2])
        rows.append(compare(f"serve {model_id}, concurrency {clients}: zoo vs the limit for any HTTP server here",
                            rate, limit, _rps, INFO,
                            f"limit = the ceiling's {best:.1f} img/s x its {1000 * best_cpu:.2f} ms CPU per image / "
                            f"({1000 * best_cpu:.2f} + {1000 * sum(bare_cpu):.2f}), the second term being what one "
                            "request costs a bare ASGI app on uvicorn (reads the body, answers a constant) and the "
                            f"same clients, measured in this run: {limit / best:.2f}x the ceiling, with the 2 cores "
                            "kept as busy as the ceiling keeps them"))
        server_cpu = cpu[0] + cpu[1]
        rows.append(compare(f"serve {model_id}, concurrency {clients}: zoo's server CPU per request vs the ceiling's "
                            "per image", server_cpu, best_cpu, _cpu_ms, INFO,
                            "ratio = the ceiling's CPU per image / zoo's (event loop + session threads) per request: "
                            "the share of the ceiling zoo would reach with its clients on other cores and the 2 cores "
                            "always busy", ratio=best_cpu / server_cpu if server_cpu > 0 else None))
        lean_rate, lean_lat, lean_cpu = found[("lean", clients)]
        rows.append(compare(f"serve {model_id}, concurrency {clients}: zoo vs lean hand-written server (zoo's "
                            "arrangement, nothing else)", rate, lean_rate, _rps, INFO,
                            f"lean: {lean_rate / best:.2f}x the ceiling, p50 {pct(lean_lat, 50)} p99 "
                            f"{pct(lean_lat, 99)}; CPU ms per request: zoo {_split(cpu)}, lean {_split(lean_cpu)}; "
                            f"a bare ASGI app handing each request to {SLOTS} worker threads on cores of their own, "
                            "1-thread session runs, no framework, checks, batching, metrics or access log"))
        rows.append(compare(f"serve {model_id}, concurrency {clients}: zoo vs plain Starlette server", rate,
                            plain_rate, _rps, ratio_at_least(1.0) if key_row else INFO,
                            f"zoo p99 {pct(lat, 99)} vs plain {pct(plain_lat, 99)}"))
        fastapi = found.get(("fastapi", clients))
        rows.append(compare(f"serve {model_id}, concurrency {clients}: zoo vs hand-written FastAPI server", rate,
                            fastapi[0] if fastapi else None, _rps, ratio_at_least(1.0) if key_row else INFO,
                            f"zoo p99 {pct(lat, 99)} vs FastAPI {pct(fastapi[1], 99)}; CPU ms per request: FastAPI "
                            f"{_split(fastapi[2])}" if fastapi else
                            "FastAPI is not installed here (pip install fastapi): the plain Starlette server above, "
                            "the layer FastAPI is built on, is the baseline"))
    return rows


def _split(cpu: tuple[float, ...]) -> str:
    return " + ".join(f"{1000 * part:.2f}" for part in cpu) + f" = {1000 * sum(cpu):.2f}"


def _cpu_ms(seconds: float) -> str:
    return f"{1000 * seconds:.2f} ms CPU"


def _rps(value: float) -> str:
    return f"{value:.1f} req/s"


def pct(values: list[float], q: int) -> str:
    if not values:
        return "—"
    ordered = sorted(values)
    return f"{ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))] * 1000:.1f} ms"


def run(cfg: Config) -> list[Row]:
    """The suite's rows (benchmarks/__main__.py)."""
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        return [Row.skipped("serve", "needs the serve extra: pip install '.[serve]'")]
    rows: list[Row] = []
    with scratch("serve") as root:
        os.environ["ZOO_HOME"] = str(root / "zoo")
        for model_id in (BATCHED, FIXED):
            seeded_home(root / "zoo", model_id)
            rows += rows_of(model_id, measure(model_id, cfg, root))
    return rows


def has_fastapi() -> bool:
    import importlib.util

    return importlib.util.find_spec("fastapi") is not None


def plain_server(model_path: str, port: int) -> None:
    """The hand-written baseline: Starlette + uvicorn + one onnxruntime session, no batching."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def ready(request: Request) -> Response:
        return Response("{}")

    app = Starlette(routes=[Route("/v2/models/{name}/infer", plain_handler(model_path), methods=["POST"]),
                            Route("/v2/health/ready", ready)])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def fastapi_server(model_path: str, port: int) -> None:
    """The issue's baseline (b): the same handler on FastAPI (which adds its routing and request layers)."""
    import uvicorn
    from fastapi import FastAPI
    from fastapi.responses import Response

    app = FastAPI()
    app.add_api_route("/v2/models/{name}/infer", plain_handler(model_path), methods=["POST"])

    @app.get("/v2/health/ready")
    async def ready() -> Response:
        return Response("{}")

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def plain_handler(model_path: str) -> Callable[..., Any]:
    """One request, one session.run in the framework's thread pool: what a competent hand-written server does."""
    import numpy as np
    import onnxruntime as ort
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import Response

    so = ort.SessionOptions()
    so.intra_op_num_threads = THREADS
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.x64quantprecision", "1")  # exact int8 products, as zoo's sessions
    session = ort.InferenceSession(model_path, so, providers=["CPUExecutionProvider"])

    async def infer(request: Request) -> Response:
        body = await request.body()
        split = int(request.headers["inference-header-content-length"])
        spec = json.loads(body[:split])["inputs"][0]
        tensor = np.frombuffer(body[split:], dtype=np.float32).reshape(spec["shape"])
        (out,) = await run_in_threadpool(session.run, None, {spec["name"]: tensor})
        head = json.dumps({"outputs": [{"name": "output", "datatype": "FP32", "shape": list(out.shape),
                                        "parameters": {"binary_data_size": out.nbytes}}]}).encode()
        return Response(head + out.tobytes(), headers={"Inference-Header-Content-Length": str(len(head))})

    # Real classes, not this module's postponed (string) annotations: FastAPI reads the signature to see
    # that `request` is the request, and would look the names up among this module's globals.
    infer.__annotations__ = {"request": Request, "return": Response}
    return infer


def bare_server(port: int) -> None:
    """The cheapest HTTP exchange uvicorn allows: read the whole body, answer a constant; no framework, no model."""
    import uvicorn

    _keep_freed_memory()
    answer = b"x" * 4096  # about the size of a binary mobilenet answer

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        more = True
        while more:
            more = (await receive()).get("more_body", False)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"4096"), (b"inference-header-content-length", b"100")]})
        await send({"type": "http.response.body", "body": answer})

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def lean_server(model_path: str, port: int) -> None:
    """zoo serve's arrangement and nothing else (see the module docstring): a bare ASGI app, a queue, SLOTS
    worker threads on cores of their own, each running a session of THREADS // SLOTS threads."""
    import asyncio
    import queue

    import numpy as np
    import onnxruntime as ort
    import uvicorn

    so = ort.SessionOptions()
    so.intra_op_num_threads = THREADS // SLOTS
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")  # as zoo serve's sessions
    so.add_session_config_entry("session.x64quantprecision", "1")  # exact int8 products, as zoo's sessions
    session = ort.InferenceSession(model_path, so, providers=["CPUExecutionProvider"])
    jobs: queue.SimpleQueue[tuple[str, Any, asyncio.Future[Any], asyncio.AbstractEventLoop]] = queue.SimpleQueue()

    def work(core: int) -> None:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {core})
        while True:
            name, tensor, future, loop = jobs.get()
            try:
                (out,) = session.run(None, {name: tensor})
            except Exception as exc:  # the client's 500 below; the worker lives on
                loop.call_soon_threadsafe(future.set_exception, exc)
            else:
                loop.call_soon_threadsafe(future.set_result, out)

    cores = sorted(os.sched_getaffinity(0))
    for i in range(SLOTS):
        threading.Thread(target=work, args=(cores[i % len(cores)],), daemon=True).start()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["method"] == "GET":  # the readiness poll
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
            await send({"type": "http.response.body", "body": b"{}"})
            return
        chunks, more = [], True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        split = int(dict(scope["headers"])[b"inference-header-content-length"])
        spec = json.loads(body[:split])["inputs"][0]
        tensor = np.frombuffer(body, dtype=np.float32, offset=split).reshape(spec["shape"])
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        jobs.put((spec["name"], tensor, future, loop))
        out = await future
        head = json.dumps({"outputs": [{"name": "output", "datatype": "FP32", "shape": list(out.shape),
                                        "parameters": {"binary_data_size": out.nbytes}}]}).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(head) + out.nbytes).encode()),
                                (b"inference-header-content-length", str(len(head)).encode())]})
        await send({"type": "http.response.body", "body": head + out.tobytes()})

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


async def _lifespan(receive: Any, send: Any) -> None:
    while (await receive())["type"] != "lifespan.shutdown":
        await send({"type": "lifespan.startup.complete"})
    await send({"type": "lifespan.shutdown.complete"})


def _keep_freed_memory() -> None:
    """glibc: serve large blocks from the heap and keep what is freed (no mmap/munmap, no trim per request).

    Left to its defaults, each request body was fresh pages: page faults were 30 % of the
    bare server's CPU, and its cost per request halved without them (0.51 -> 0.27 ms here).
    """
    import ctypes

    with contextlib.suppress(OSError, AttributeError):  # not glibc: its defaults stand
        libc = ctypes.CDLL(None)
        libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD: blocks under 32 MiB come from the heap
        libc.mallopt(-1, 256 << 20)  # M_TRIM_THRESHOLD: keep up to 256 MiB free at the heap's top


def main(argv: list[str] | None = None) -> int:
    global REPS, CLIENT_CORES
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--reps", type=int, default=REPS, help="interleaved windows per system and level")
    parser.add_argument("--client-cores", type=parse_cores, metavar="CPUS",
                        help="pin the load generator to these cores (such as 2-7), off the servers' ones")
    parser.add_argument("--plain-server", nargs=2, metavar=("MODEL.onnx", "PORT"), help=argparse.SUPPRESS)
    parser.add_argument("--bare-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--lean-server", nargs=2, metavar=("MODEL.onnx", "PORT"), help=argparse.SUPPRESS)
    parser.add_argument("--fastapi-server", nargs=2, metavar=("MODEL.onnx", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.bare_server:
        bare_server(args.bare_server)
        return 0
    if args.fastapi_server:
        fastapi_server(args.fastapi_server[0], int(args.fastapi_server[1]))
        return 0
    if args.plain_server:
        plain_server(args.plain_server[0], int(args.plain_server[1]))
        return 0
    if args.lean_server:
        lean_server(args.lean_server[0], int(args.lean_server[1]))
        return 0
    from benchmarks.__main__ import isolate

    REPS, CLIENT_CORES = max(1, args.reps), args.client_cores
    from benchmarks.report import table

    with scratch("serve-env") as home:
        isolate(home)
        rows = run(Config(smoke=args.smoke))
    print(table(rows))
    return 1 if any(r.met == "error" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())


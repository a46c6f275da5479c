"""Download throughput: zoo.store.download.fetch vs curl, aria2c and huggingface_hub.hf_hub_download, over loopback.

One file of random bytes is generated once and served by benchmarks/_server.py
(sendfile, Range) from a thread of this process: sendfile releases the GIL, and
a server in a separate process gave the same figures. Each client writes into a
fresh directory per run, after an untimed os.sync(); the median MB/s
(1 MB = 10**6 bytes) of the runs is reported, with every run in the notes.

Two servers: one as fast as loopback goes (zoo's defaults against curl -o), and
one that caps each connection at CAP bytes/s, as a CDN caps each flow, where
`connections=4` is compared with one connection and with `aria2c -x4 -s4`.
aria2 is installed with apt-get when it is missing (rows say n/a if that fails).
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks._common import (
    INFO,
    Config,
    Row,
    Target,
    compare,
    in_turn,
    mb_per_s,
    median,
    paired_ratio,
    ratio_at_least,
    scratch,
    timed,
)
from benchmarks._server import FileServer
from zoo.store import ranges

NAME = "download"
MIB = 1024 * 1024
REPO_ID = "bench/random"
CAP = 50e6  # bytes/s per connection on the capped server


@dataclass(frozen=True)
class Payload:
    """One served file: where it is, what it is, and its URLs."""

    filename: str
    sha256: str
    size: int
    mirror_url: str
    entry: Any


def run(cfg: Config) -> list[Row]:
    return _uncapped(cfg) + _capped(cfg)


def _uncapped(cfg: Config) -> list[Row]:
    size = cfg.pick(300 * MIB, 20 * MIB)
    runs = cfg.pick(7, 1)  # 7: on a shared VM a 0.3 s run now and then costs 40 % more CPU, for any client
    with scratch("download") as work, FileServer() as server:
        payload = _serve(server, work, "random.bin", size)
        clients = {"zoo": _zoo, "zoo -c1": functools.partial(_zoo, connections=1), "curl": _curl,
                   "curl+fsync": _curl_fsync, "curl+sha256": _curl_sha256, "hf": functools.partial(_hf, server.url)}
        # An untimed round first: imports and one-time setup (huggingface_hub's agent-registry lookup)
        # are not throughput.
        _measure(clients, payload, 1, work)
        results = _measure(clients, payload, runs, work)
    return _rows(results, size, runs)


def _capped(cfg: Config) -> list[Row]:
    size = cfg.pick(200 * MIB, 20 * MIB)
    runs = cfg.pick(3, 1)
    aria2c = _ensure_aria2()
    with scratch("download-capped") as work, FileServer(cap=CAP) as server:
        payload = _serve(server, work, "random.bin", size)
        clients = {"zoo -c1": functools.partial(_zoo, connections=1), "zoo -c4": functools.partial(_zoo, connections=4),
                   "curl": _curl, "aria2c": functools.partial(_aria2c, aria2c)}
        results = _measure(clients, payload, runs, work)
    return _capped_rows(results, size, runs)


def _serve(server: FileServer, work: Path, filename: str, size: int) -> Payload:
    """Write `size` random bytes and serve them as a mirror file and a Hugging Face file."""
    path, hasher = work / filename, hashlib.sha256()
    with open(path, "wb") as f:
        for at in range(0, size, 16 * MIB):
            chunk = os.urandom(min(16 * MIB, size - at))
            hasher.update(chunk)
            f.write(chunk)
    sha256 = hasher.hexdigest()
    url = server.add(f"mirror/{filename}", path)
    server.add_hub_file(REPO_ID, filename, path, sha256)
    return Payload(filename, sha256, size, url, _entry(filename, sha256, size))


def _entry(filename: str, sha256: str, size: int) -> Any:
    """A made-up ModelEntry for a served file (only id, task, opset and file are required)."""
    from zoo.index.manifest import ModelEntry

    model_id = f"bench-{filename.split('.')[0]}"
    data = {"id": model_id, "task": "benchmark", "opset": 1,
            "file": {"path": f"bench/{filename}", "sha256": sha256, "size": size}}
    return ModelEntry.from_dict(data, source="benchmarks", family="bench", where=model_id)


def _zoo(payload: Payload, out: Path, connections: int | None = None) -> Path:
    from zoo.store import download
    from zoo.store.sources import Source

    entry = payload.entry
    result = download.fetch(entry, entry.file, root=out, sources=[Source("mirror", payload.mirror_url)],
                            progress=False, log=lambda message: None, connections=connections)
    if not result.downloaded:
        raise RuntimeError(f"zoo did not download (source {result.source})")
    return result.path


def _curl(payload: Payload, out: Path) -> Path | None:
    curl = shutil.which("curl")
    if curl is None:
        return None
    target = out / payload.filename
    subprocess.run([curl, "-s", "-o", str(target), payload.mirror_url], check=True)
    return target


def _curl_fsync(payload: Payload, out: Path) -> Path | None:
    """`curl -o FILE && sync FILE`: the bytes on disk before it returns, as zoo has them before publishing."""
    target = _curl(payload, out)
    if target is None:
        return None
    fd = os.open(target, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return target


def _curl_sha256(payload: Payload, out: Path) -> Path | None:
    """`curl -o FILE && openssl sha256 FILE`: download, then hash, one after the other (what zoo overlaps)."""
    openssl = shutil.which("openssl")
    target = _curl(payload, out)
    if target is None or openssl is None:
        return None
    digest = subprocess.run([openssl, "sha256", "-r", str(target)], check=True, capture_output=True, text=True)
    if not digest.stdout.startswith(payload.sha256):
        raise RuntimeError(f"openssl sha256 gave {digest.stdout.split()[0]}")
    return target


def _ensure_aria2() -> str | None:
    """aria2c's path, installing the Debian package when it is missing and apt-get can (None: no aria2c)."""
    found = shutil.which("aria2c")
    if found is None and shutil.which("apt-get") is not None:
        for command in (["apt-get", "update"], ["apt-get", "install", "-y", "aria2"]):
            if subprocess.run(command, capture_output=True, check=False).returncode != 0:
                break
        found = shutil.which("aria2c")
    return found


def _aria2c(aria2c: str | None, payload: Payload, out: Path) -> Path | None:
    """`aria2c -x4 -s4 -k1M`: four connections to the one server, no checksum (it would hash after the download).

    -k1M lets aria2c split files under its default 40 MiB minimum (smoke runs); a 200 MiB file is split in four
    either way.
    """
    if aria2c is None:
        return None
    subprocess.run([aria2c, "-q", "-x4", "-s4", "-k1M", "--allow-overwrite=true", "-d", str(out),
                    "-o", payload.filename,
                    payload.mirror_url], check=True)
    return out / payload.filename


def _hf(endpoint: str, payload: Payload, out: Path) -> Path:
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(REPO_ID, payload.filename, cache_dir=out, endpoint=endpoint))


@dataclass
class Results:
    """MB/s per client and run; clients without figures, and why ("not installed" or the error)."""

    rates: dict[str, list[float]]
    missing: dict[str, str]


def _measure(clients: dict[str, Any], payload: Payload, runs: int, work: Path) -> Results:
    """Run every client `runs` times, taking turns; a failing client is dropped, not the benchmark."""
    res = Results({name: [] for name in clients}, {})
    for n in range(runs):
        for name in in_turn(list(clients), n):
            if name in res.missing:
                continue
            out = work / f"run-{n}-{name}"
            out.mkdir()
            os.sync()  # untimed: write back the previous client's dirty pages so they do not slow this one
            try:
                seconds, path = timed(functools.partial(clients[name], payload, out))
                if path is None:
                    res.missing[name] = "not installed"
                else:
                    _check_size(name, Path(path), payload.size)
                    res.rates[name].append(payload.size / 1e6 / seconds)
            except Exception as exc:  # reported in this client's row
                res.missing[name] = f"{type(exc).__name__}: {exc}"
            finally:
                shutil.rmtree(out, ignore_errors=True)
    return res


def _check_size(name: str, path: Path, size: int) -> None:
    got = path.stat().st_size
    if got != size:
        raise RuntimeError(f"{name} wrote {got} bytes, expected {size}")


def _rows(res: Results, size: int, runs: int) -> list[Row]:
    if "zoo" in res.missing:
        raise RuntimeError(f"zoo fetch failed: {res.missing['zoo']}")
    mb, zoo = f"{size / MIB:.0f} MiB", res.rates["zoo"]
    how = (f"median of {runs}; zoo (defaults: one stream, {ranges.AUTO_CONNECTIONS} connections only if it is "
           f"under {ranges.SLOW_STREAM / 1e6:.0f} MB/s) hashes sha256 while streaming, fsyncs, then publishes "
           f"(os.replace + link); runs MB/s: {_runs(res)}")
    curl = res.rates["curl"]
    best = f"; best-of ratio {max(zoo) / max(curl):.2f}" if curl else ""
    return [
        _row(res, "curl", f"download {mb}: zoo fetch vs curl -o", ratio_at_least(0.9),
             f"{how}{best}; curl neither hashes nor fsyncs, and pays its process start"),
        _row(res, "curl", f"download {mb}: zoo fetch -c1 vs curl -o", INFO,
             f"{how}; one connection", zoo_key="zoo -c1"),
        _row(res, "curl+fsync", f"download {mb}: zoo fetch vs curl -o && sync FILE", INFO,
             f"{how}; the baseline downloads, then fsyncs the file (durable, as zoo's is before it is "
             "published), no hash: where the disk's durable write speed is below curl's, this is the bound"),
        _row(res, "curl+sha256", f"download {mb}: zoo fetch vs curl -o && openssl sha256", INFO,
             f"{how}; the baseline downloads, then hashes (no fsync)"),
        _row(res, "hf", f"download {mb}: zoo fetch vs hf_hub_download", INFO,
             f"{how}; hf_hub_download: HEAD + GET, no sha256 check, no fsync"),
    ]


def _capped_rows(res: Results, size: int, runs: int) -> list[Row]:
    for name in ("zoo -c1", "zoo -c4"):
        if name in res.missing:
            raise RuntimeError(f"{name} fetch failed: {res.missing[name]}")
    mb = f"{size / MIB:.0f} MiB, {CAP / 1e6:.0f} MB/s per connection"
    how = f"median of {runs}; runs MB/s: {_runs(res)}"
    return [
        _row(res, "zoo -c1", f"download {mb}: zoo -c4 vs zoo -c1", ratio_at_least(3.0), how, zoo_key="zoo -c4"),
        _row(res, "aria2c", f"download {mb}: zoo -c4 vs aria2c -x4 -s4 -k1M", ratio_at_least(0.9),
             f"{how}; aria2c does not hash (no --checksum) nor fsync", zoo_key="zoo -c4"),
        _row(res, "curl", f"download {mb}: zoo -c4 vs curl -o", INFO, f"{how}; curl uses one connection",
             zoo_key="zoo -c4"),
    ]


def _row(res: Results, baseline: str, name: str, target: Target, notes: str, *, zoo_key: str = "zoo") -> Row:
    why = res.missing.get(baseline)
    if why is not None and why != "not installed":
        return Row.error(name, RuntimeError(f"{baseline}: {why}"))
    zoo, base = res.rates[zoo_key], res.rates[baseline]
    return compare(name, median(zoo), median(base) if base else None, mb_per_s, target,
                   notes + (f"; {baseline} not installed" if why else ""),
                   ratio=paired_ratio(zoo, base) if base else None)


def _runs(res: Results) -> str:
    """`zoo 512, 530; curl 601, 640; ...`: every run, for the notes."""
    return "; ".join(f"{name} " + (", ".join(f"{x:.0f}" for x in r) if r else res.missing.get(name, "—"))
                     for name, r in res.rates.items())

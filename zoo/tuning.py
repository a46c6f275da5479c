"""How a run over many inputs uses the cores: pure decisions, measured in benchmarks/bench_batch.py.

Each input costs decoding + preprocessing (Pillow and numpy, which release the GIL) and a
session run. On the 2-core Xeon of BENCHMARKS.md the two cost about the same for the zoo's
small int8 classifiers, and the layouts compare like this:

- one inference thread with 2 intra-op threads beside decode threads: a parallel op waits
  at its barrier for every intra-op thread, so one preempted by a decoder stalls the run;
  spinning intra-op threads (onnxruntime's default) also burn the cycles decoders need;
- one inference thread with 1 intra-op thread: no barrier, but inference alone can then
  use only one core, so the run is capped at 1 / (inference time);
- streams: a few threads that each prepare a chunk of inputs and run it on a session with
  one intra-op thread (one session: onnxruntime allows concurrent runs). Decoding and
  runs overlap on every core, with no barrier and no spinning: the least CPU per input,
  and the closest to the ceiling of cores / (decode + inference).

So folder runs load the session with 1 intra-op thread (more only on many cores, where a
stream per core would hold too many batches in memory) and stream with one thread more
than the cores, so that a core never idles while a stream waits for the GIL or the disk.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

# Streams at most: each holds one chunk of prepared inputs and its run's activations.
MAX_STREAMS = 9
# Inputs per chunk for a model whose batch axis is fixed at 1: a few per task, so that the pool's
# per-task overhead is shared, and few enough that the streams stay balanced at a folder's end.
FIXED_BATCH_CHUNK = 4


@dataclass(frozen=True, slots=True)
class FolderPlan:
    """How to run many inputs: the session's intra-op threads and spinning, the streams, the chunk."""

    threads: int  # intra-op threads of the session
    spinning: bool  # whether they busy-wait between ops (never, beside decoding threads)
    workers: int  # streams: threads that each prepare a chunk and run it
    chunk: int  # inputs per stream task


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, as taskset or a container sets it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no sched_getaffinity (macOS, Windows)
        return max(1, os.cpu_count() or 1)


def folder_threads(cores: int) -> int:
    """Intra-op threads for a session that will run many inputs: 1, until the streams hit MAX_STREAMS."""
    return max(1, -(-max(1, cores) // (MAX_STREAMS - 1)))


def stream_workers(cores: int, threads: int) -> int:
    """Streams beside a session with `threads` intra-op threads (0: onnxruntime's default, one per core).

    One per group of `threads` cores, plus one; at least 2, so that decoding overlaps runs.
    """
    cores = max(1, cores)
    per_run = cores if threads <= 0 else min(threads, cores)
    return max(2, min(MAX_STREAMS, cores // per_run + 1))


def chunk_size(batch: int, *, batched: bool) -> int:
    """Inputs per stream task: one run's worth (`batch`) for a model with a batch axis, else a few."""
    return max(1, batch) if batched else FIXED_BATCH_CHUNK


def chunks_ahead(workers: int) -> int:
    """Chunks submitted but not yet consumed: the bound on the queue (each stream has the next one ready)."""
    return 2 * max(1, workers)


def folder_plan(cores: int, *, batch: int, batched: bool) -> FolderPlan:
    """The whole plan for a run over many inputs on `cores` cores."""
    threads = folder_threads(cores)
    return FolderPlan(threads=threads, spinning=False, workers=stream_workers(cores, threads),
                      chunk=chunk_size(batch, batched=batched))

"""zoo.tuning: how a folder run splits the cores, and predict_iter keeping to its bounded queue."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import DATA, need

from zoo import tuning
from zoo.tuning import FolderPlan


def test_two_cores_stream_on_one_intra_op_thread() -> None:
    # The measured best on the 2-core Xeon (BENCHMARKS.md): no intra-op barrier, no spinning, 3 streams.
    assert tuning.folder_plan(2, batch=16, batched=True) == FolderPlan(threads=1, spinning=False, workers=3, chunk=16)
    assert tuning.folder_plan(2, batch=1, batched=False) == FolderPlan(threads=1, spinning=False, workers=3,
                                                                       chunk=tuning.FIXED_BATCH_CHUNK)


@pytest.mark.parametrize(("cores", "threads"), [(0, 1), (1, 1), (2, 1), (8, 1), (9, 2), (16, 2), (64, 8)])
def test_folder_threads_stay_at_one_until_the_streams_run_out(cores: int, threads: int) -> None:
    assert tuning.folder_threads(cores) == threads


@pytest.mark.parametrize(("cores", "threads", "workers"), [
    (2, 1, 3),  # a stream per core, plus one for the GIL and disk waits
    (2, 0, 2),  # onnxruntime's default (a thread per core): still 2, so decoding overlaps the runs
    (2, 2, 2),
    (2, 8, 2),  # more intra-op threads than cores counts as all of them
    (1, 1, 2),
    (16, 2, 9),
    (64, 1, tuning.MAX_STREAMS),  # capped: each stream holds a chunk and its activations
])
def test_stream_workers(cores: int, threads: int, workers: int) -> None:
    assert tuning.stream_workers(cores, threads) == workers


def test_chunks_follow_the_batch_axis() -> None:
    assert tuning.chunk_size(16, batched=True) == 16  # one run's worth: groups never exceed batch_size
    assert tuning.chunk_size(0, batched=True) == 1
    assert tuning.chunk_size(1, batched=False) == tuning.FIXED_BATCH_CHUNK
    assert tuning.chunks_ahead(3) == 6 and tuning.chunks_ahead(0) == 2


def test_usable_cores_follow_the_affinity_mask(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3}, raising=False)
    assert tuning.usable_cores() == 1
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert tuning.usable_cores() == 1


@pytest.fixture
def seeded() -> None:
    from zoo.index.catalog import load_index
    from zoo.store import download

    for model_id in ("shufflenet-v2-12-int8", "mobilenetv2-12-int8"):
        entry = load_index().resolve(model_id).entry
        download.import_file(entry, entry.file, need(DATA / "models" / entry.file.name))


def test_predict_iter_reads_its_inputs_only_a_bounded_way_ahead(seeded: None) -> None:
    import zoo

    photo = str(need(DATA / "images" / "frog.jpg"))
    taken: list[int] = []

    def endless() -> Iterator[str]:
        for n in itertools.count():
            taken.append(n)
            yield photo

    model = zoo.load("shufflenet-v2-12-int8", threads=1)
    rows = list(itertools.islice(model.predict_iter(endless(), workers=2), 5))
    assert [r.predictions[0].label for r in rows] == ["tree frog"] * 5
    # Consumed: the 5 rows' chunks plus at most the queue bound of chunks ahead, never the whole stream.
    assert len(taken) <= 5 + tuning.chunks_ahead(2) * tuning.FIXED_BATCH_CHUNK + 1


def test_predict_iter_keeps_input_order_around_bad_files_across_streams(seeded: None, tmp_path: Path) -> None:
    import zoo

    photos = sorted(need(DATA / "images").glob("*.jp*g"))[:6]
    bad = tmp_path / "bad.jpg"
    bad.write_text("not a picture")
    items = [str(p) for p in photos[:3]] + [str(bad)] + [str(p) for p in photos[3:]] + [str(bad)]
    model = zoo.load("mobilenetv2-12-int8", threads=1)
    sizes: list[int] = []
    run = model.run

    def counting(feeds: dict) -> dict:
        sizes.append(len(next(iter(feeds.values()))))
        return run(feeds)

    model.run = counting  # type: ignore[method-assign]
    rows = list(model.predict_iter(items, batch_size=2, workers=3, topk=1))
    assert [r.input for r in rows] == items
    assert [hasattr(r, "error") for r in rows] == [False] * 3 + [True] + [False] * 3 + [True]
    assert max(sizes) <= 2 and sum(sizes) == 6  # batch_size holds inside every stream's chunk
    singles = [model.predict(p, topk=1).predictions[0].index for p in items if p != str(bad)]
    assert [r.predictions[0].index for r in rows if not hasattr(r, "error")] == singles

"""Eight `zoo pull a b c` processes at once: one body GET per model, every process gets verified files.

The mirror is throttled (about a second per model) so the processes overlap: most of them find a blob
locked by another process and wait for it instead of downloading it again. Half pull the three models
one after the other, half with -j 3, so the lock is taken in different orders. Then two pulls with
--with-test-data extract the same archive at once.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from pathlib import Path

import pytest
from conftest import tar_gz
from reliability_helpers import MIB, Mirror, assert_cache_clean, spawn_zoo, synthetic, use_models

import zoo.api

MODELS = [synthetic(f"rel-conc-{n}", 2 * MIB + n, seed=30 + n) for n in range(3)]
PROCESSES = 8
WAITING = "waiting for another zoo process"


def test_eight_processes_three_models_download_each_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_env: Path
) -> None:
    use_models(monkeypatch, tmp_path / "manifests", *MODELS)
    files = {path: data for m in MODELS for path, data in m.files().items()}
    ids = [m.model_id for m in MODELS]
    with Mirror(files) as mirror:
        mirror.rate = 2 * MIB
        monkeypatch.setenv("ZOO_MIRROR", mirror.url)
        procs = [spawn_zoo("pull", "--quiet", "--json", *ids, *(["-j", "3"] if n % 2 else []), env={})
                 for n in range(PROCESSES)]
        outs = [p.communicate(timeout=90) for p in procs]
        gets = {m.model_id: len(mirror.gets(m.path)) for m in MODELS}
        heads = [r for r in mirror.requests if r.method != "GET"]

    assert [p.returncode for p in procs] == [0] * PROCESSES, [err for _, err in outs]
    results = [json.loads(out) for out, _ in outs]
    assert gets == dict.fromkeys(ids, 1) and heads == []
    for model in MODELS:
        mine = [r for result in results for r in result if r["id"] == model.model_id]
        assert len(mine) == PROCESSES and len({r["path"] for r in mine}) == 1
        assert sum(r["downloaded"] for r in mine) == 1  # one process downloaded it; the others waited or hit
        assert Path(mine[0]["path"]).read_bytes() == model.data
    assert assert_cache_clean(isolated_env) == len(MODELS)
    assert list((isolated_env / "partial").iterdir()) == []
    assert not list((isolated_env / "models").rglob(".*"))  # no temp views left behind
    waits = sum(err.count(WAITING) for _, err in outs)
    assert waits >= 1, "the processes never overlapped: nothing tested the lock"


# -- two pulls extracting the same test data at once ----------------------------------------------

@pytest.mark.parametrize("extracted_before", [False, True], ids=["first-extraction", "re-extraction"])
def test_two_pulls_extract_the_same_test_data_at_once(
    extracted_before: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_env: Path
) -> None:
    files = {f"test_data_set_0/input_{n}.pb": bytes([n]) * 100 for n in range(3)}
    model = synthetic("rel-conc-td", 1000, seed=39, test_data=tar_gz(files))
    use_models(monkeypatch, tmp_path / "manifests", model)
    with Mirror(model.files()) as mirror:
        monkeypatch.setenv("ZOO_MIRROR", mirror.url)
        zoo.api.pull(model.model_id, with_test_data=True)  # both files cached: only the extraction is left
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    dest = isolated_env / "models" / model.model_id / "test_data"
    if not extracted_before:
        shutil.rmtree(dest)
    # Widen the window between "is dest there?" and the renames, as a busy machine does; nothing else changes.
    real_replace = os.replace

    def slow_replace(src: object, dst: object) -> None:
        time.sleep(0.05)
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", slow_replace)
    start, errors = threading.Barrier(2), list[Exception]()

    def pull() -> None:
        start.wait()
        try:
            zoo.api.pull(model.model_id, with_test_data=True)
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=pull) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert {str(p.relative_to(dest)): p.read_bytes() for p in dest.rglob("*.pb")} == files
    assert sorted(p.name for p in dest.parent.iterdir() if p.name.startswith(".")) == []  # no .tmp/.old left

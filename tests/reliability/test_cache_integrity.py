"""The cache stays whole: kill -9 of `zoo cache rm/prune`, half-present test data, `clear` on a folder that is
not a cache, files and links planted in the cache, and the extraction lock.

The model is a real (tiny) ONNX graph, y = x + 1, with a test-data archive of many small sets, so `zoo check`
really runs and a deletion has many files to remove. Every trial ends with `zoo cache verify` clean.
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from reliability_helpers import Mirror, Model, assert_cache_clean, assert_clear_error, spawn_zoo, use_models, zoo

from zoo.store import archive

SETS = 150  # 300 files and 150 folders: enough that a deletion has work to be killed in


def onnx_bytes(add: float, doc: str = "") -> bytes:
    graph = helper.make_graph([helper.make_node("Add", ["x", "c"], ["y"])], "plus",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor("c", TensorProto.FLOAT, [1], [add])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8, doc_string=doc)
    return model.SerializeToString()


def archive_bytes(sets: int = SETS) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for i in range(sets):
            x = np.full((1, 4), i, dtype=np.float32)
            for name, arr in (("input_0", x), ("output_0", x + 1)):
                data = numpy_helper.from_array(arr, "x" if name == "input_0" else "y").SerializeToString()
                info = tarfile.TarInfo(f"plus/test_data_set_{i}/{name}.pb")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


PLUS = Model("rel-plus-1", onnx_bytes(1.0), archive_bytes())


@pytest.fixture
def mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Mirror:
    use_models(monkeypatch, tmp_path / "manifests", PLUS)
    with Mirror(PLUS.files()) as server:
        monkeypatch.setenv("ZOO_MIRROR", server.url)
        yield server


def seeded(home: Path) -> Path:
    result = zoo("pull", "--quiet", "--with-test-data", PLUS.model_id, env={"ZOO_HOME": str(home)})
    assert result.exit_code == 0, result.stderr
    return home / "models" / PLUS.model_id / "test_data"


def whole(folder: Path) -> bool:
    return archive.missing_members(folder) == [] and len(list(folder.rglob("*.pb"))) == 2 * SETS


# -- kill -9 during rm and prune ----------------------------------------------------------------------------


def run_killed(args: list[str], home: Path, delay: float) -> int:
    proc = spawn_zoo(*args, env={"ZOO_HOME": str(home)})
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        proc.kill()
    proc.communicate(timeout=30)
    return proc.returncode


def killed_in_trash(args: list[str], home: Path) -> bool:
    """Run `args` and kill -9 it the moment trash/ holds something: True when the kill came before it finished.

    A kill timed from the start misses a deletion window of a few milliseconds whenever start-up
    time jitters by more than that (it does, on a loaded machine); watching for the rename does not.
    """
    proc, trash = spawn_zoo(*args, env={"ZOO_HOME": str(home)}), home / "trash"
    try:
        while proc.poll() is None:
            with contextlib.suppress(OSError):  # trash/ comes and goes
                if any(os.scandir(trash)):
                    proc.kill()
                    break
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode == -signal.SIGKILL


def check_trial(command: list[str], home: Path, states: dict[str, int]) -> None:
    """The killed deletion left the test data whole or gone (halves only in trash/), and the next run mends it."""
    folder, trash = home / "models" / PLUS.model_id / "test_data", home / "trash"
    if trash.exists() and any(trash.iterdir()):
        states["in trash"] += 1
    if folder.exists():
        assert whole(folder), f"test data half deleted: {archive.missing_members(folder)}"
        states["untouched"] += 1
    else:
        states["gone"] += 1
    assert_cache_clean(home)  # verify also finishes nothing: it only reads; trash is left to deletions
    result = zoo("pull", "--quiet", "--with-test-data", PLUS.model_id, env={"ZOO_HOME": str(home)})
    assert result.exit_code == 0, result.stderr
    assert whole(folder)
    zoo("cache", "prune", "--yes", env={"ZOO_HOME": str(home)})
    assert not trash.exists(), "the next deletion empties the trash a killed one left"
    assert_cache_clean(home)


@pytest.mark.parametrize("command", [["cache", "rm", "rel-plus-1", "--yes"],
                                     ["cache", "prune", "--older-than", "0s", "--yes"]], ids=["rm", "prune"])
def test_kill_9_during_deletion_never_leaves_test_data_half_deleted(
        mirror: Mirror, tmp_path: Path, command: list[str]) -> None:
    template = tmp_path / "template"
    seeded(template)
    shutil.copytree(template, tmp_path / "calibrate", symlinks=True)
    started = time.monotonic()
    assert run_killed(command, tmp_path / "calibrate", 60) == 0
    full = time.monotonic() - started
    rng, states = random.Random(12), {"untouched": 0, "gone": 0, "in trash": 0}
    for trial in range(8):  # kills at random moments of the whole run: before, during and after the deletion
        home = tmp_path / f"timed-{trial}"
        shutil.copytree(template, home, symlinks=True)
        run_killed(command, home, rng.uniform(0.3 * full, 1.2 * full))
        check_trial(command, home, states)
        shutil.rmtree(home, ignore_errors=True)
    landed = 0
    for trial in range(4):  # kills the moment the rename into trash/ is seen: inside the deletion window
        home = tmp_path / f"watched-{trial}"
        shutil.copytree(template, home, symlinks=True)
        landed += killed_in_trash(command, home)
        check_trial(command, home, states)
        shutil.rmtree(home, ignore_errors=True)
    assert states["untouched"] + states["gone"] == 12, states
    assert landed >= 1 and states["in trash"] >= 1, (
        f"no kill landed mid-deletion (full run {full:.2f} s, {landed} watched kills before the end): {states}")


@pytest.mark.parametrize("leftover", ["empty", "half-deleted-tree"])
def test_a_deletion_with_nothing_to_delete_still_finishes_the_trash(mirror: Mirror, isolated_env: Path,
                                                                    leftover: str) -> None:
    """A kill after the last rename (trash/ left empty) or mid-rmtree: the next prune finishes it."""
    seeded(isolated_env)
    trash = isolated_env / "trash"
    trash.mkdir()
    if leftover == "half-deleted-tree":
        (trash / "0123abcd" / "plus").mkdir(parents=True)
        (trash / "0123abcd" / "plus" / "input_0.pb").write_bytes(b"x")
    result = zoo("cache", "prune", "--yes")
    assert result.exit_code == 0, result.stderr
    assert not trash.exists()
    assert_cache_clean(isolated_env)


# -- half-present test data: restored by pull and check, refused elsewhere --------------------------------


def half_delete(folder: Path, *, keep_record: bool) -> None:
    """What a killed `rm -r` (or an older zoo) leaves: some sets gone, maybe the record too."""
    for i in range(0, SETS, 2):
        shutil.rmtree(folder / "plus" / f"test_data_set_{i}")
    if not keep_record:
        (folder / archive.RECORD).unlink()


@pytest.mark.parametrize("keep_record", [True, False], ids=["with-record", "older-zoo-no-record"])
def test_pull_with_test_data_restores_a_half_present_folder(mirror: Mirror, isolated_env: Path,
                                                            keep_record: bool) -> None:
    folder = seeded(isolated_env)
    half_delete(folder, keep_record=keep_record)
    result = zoo("pull", "--with-test-data", PLUS.model_id)
    assert result.exit_code == 0 and "extracting it again" in result.stderr, result.stderr
    assert whole(folder)
    assert assert_cache_clean(isolated_env) == 2


@pytest.mark.parametrize("keep_record", [True, False], ids=["with-record", "older-zoo-no-record"])
def test_check_restores_the_cached_test_data_then_runs_every_set(mirror: Mirror, isolated_env: Path,
                                                                 keep_record: bool) -> None:
    import json

    folder = seeded(isolated_env)
    half_delete(folder, keep_record=keep_record)
    result = zoo("check", PLUS.model_id, "--json")
    assert result.exit_code == 0, result.stderr
    (report,) = json.loads(result.stdout)
    assert report["passed"] and len({c["set"] for c in report["checks"]}) == SETS
    assert whole(folder)


def test_check_refuses_an_incomplete_folder_it_cannot_restore(mirror: Mirror, isolated_env: Path,
                                                              tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(seeded(isolated_env), copy)
    half_delete(copy, keep_record=True)
    result = zoo("check", PLUS.model_id, "--test-data", str(copy))
    assert_clear_error(result, 2, "incomplete", f"{SETS} extracted files", "--with-test-data")


# -- clear on a folder that is not a zoo cache -----------------------------------------------------------


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("layout", [["notes.txt"], ["models/mine.onnx", "src/main.py"], ["blobs/x", "thesis.tex"]])
def test_clear_refuses_a_folder_that_is_not_a_zoo_cache(tmp_path: Path, layout: list[str]) -> None:
    home = tmp_path / "not-a-cache"
    for name in layout:
        (home / name).parent.mkdir(parents=True, exist_ok=True)
        (home / name).write_text("mine")
    before = files_under(home)
    for args in (["clear", "--yes"], ["prune", "--yes"], ["clear", "--dry-run"]):
        assert_clear_error(zoo("cache", *args, env={"ZOO_HOME": str(home)}), 2, "not a zoo cache", "ZOO_HOME")
    assert files_under(home) == before


def test_clear_keeps_and_lists_what_zoo_did_not_write(mirror: Mirror, isolated_env: Path) -> None:
    seeded(isolated_env)
    mine = [isolated_env / "notes.txt", isolated_env / "models" / "rel-plus-1" / "my-notes.txt",
            isolated_env / "blobs" / "sha256" / "not-a-hash", isolated_env / "models" / "mine" / "a.onnx"]
    for path in mine:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("mine")
    result = zoo("cache", "clear", "--yes")
    assert result.exit_code == 0, result.stderr
    assert "keeping 4 entries zoo did not make" in result.stderr, result.stderr
    assert all(str(p) in result.stderr and p.read_text() == "mine" for p in mine)
    assert sorted(p.relative_to(isolated_env).as_posix() for p in isolated_env.rglob("*") if p.is_file()) == [
        "CACHEDIR.TAG", "blobs/sha256/not-a-hash", "models/mine/a.onnx", "models/rel-plus-1/my-notes.txt",
        "notes.txt"]


def test_clear_accepts_a_cache_from_before_the_tag(mirror: Mirror, isolated_env: Path) -> None:
    seeded(isolated_env)
    (isolated_env / "CACHEDIR.TAG").unlink()  # an old cache: recognised by its layout
    assert zoo("cache", "clear", "--yes").exit_code == 0
    assert not (isolated_env / "blobs" / "sha256").exists()


# -- planted files and links ------------------------------------------------------------------------------


def test_a_planted_view_of_the_right_size_is_not_run_and_verify_reports_it(mirror: Mirror,
                                                                           isolated_env: Path) -> None:
    import zoo as api

    seeded(isolated_env)
    view = isolated_env / "models" / PLUS.model_id / f"{PLUS.model_id}.onnx"
    evil = onnx_bytes(1000.0)
    evil = onnx_bytes(1000.0, doc="p" * (len(PLUS.data) - len(evil) - 2))  # doc_string pads it to the same size
    assert len(evil) == len(PLUS.data)
    view.unlink()
    view.write_bytes(evil)
    x = {"x": np.zeros((1, 4), np.float32)}
    assert api.load(PLUS.model_id).run(x)["y"].tolist() == [[1.0] * 4]  # the verified blob ran, not the plant
    result = zoo("cache", "verify")
    assert result.exit_code == 3 and "planted or changed" in result.stdout and str(view) in result.stdout
    assert not view.exists()
    assert zoo("pull", "--quiet", PLUS.model_id).exit_code == 0 and view.read_bytes() == PLUS.data
    assert assert_cache_clean(isolated_env) == 2


@pytest.mark.parametrize("where", ["partial", "models/rel-plus-1", "locks", "partial/file"])
def test_a_planted_symlink_never_redirects_writes_out_of_the_cache(mirror: Mirror, isolated_env: Path,
                                                                    tmp_path: Path, where: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (isolated_env / "blobs" / "sha256").mkdir(parents=True)
    from zoo.store.cache import ensure_root

    ensure_root(isolated_env)
    if where == "partial/file":  # the partial download of this very blob
        from conftest import sha256_hex

        link = isolated_env / "partial" / f"{sha256_hex(PLUS.data)}.part"
        target = outside / "victim"
        target.write_bytes(b"keep me")
    else:
        link, target = isolated_env / where, outside
        if link.exists():
            link.rmdir()
        link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)
    result = zoo("pull", "--with-test-data", PLUS.model_id)
    assert_clear_error(result, 2, "symlink", str(link))
    assert sorted(p.name for p in outside.iterdir()) == ([] if where != "partial/file" else ["victim"])
    if where == "partial/file":
        assert target.read_bytes() == b"keep me"
    assert "symlink" in zoo("cache", "ls").stderr  # reported
    link.unlink()
    assert zoo("pull", "--quiet", "--with-test-data", PLUS.model_id).exit_code == 0
    assert assert_cache_clean(isolated_env) == 2


# -- the extraction lock ------------------------------------------------------------------------------------


def test_extraction_leaves_no_lock_anywhere(mirror: Mirror, isolated_env: Path) -> None:
    before = set(os.listdir(tempfile.gettempdir()))
    folder = seeded(isolated_env)
    half_delete(folder, keep_record=True)
    assert zoo("pull", "--quiet", "--with-test-data", PLUS.model_id).exit_code == 0  # a second extraction
    assert [n for n in set(os.listdir(tempfile.gettempdir())) - before if "zoo" in n] == []
    assert [p.name for p in (isolated_env / "locks").iterdir() if p.name.startswith("extract-")] == []


def test_concurrent_extractions_share_the_lock_and_leave_it_clean(mirror: Mirror, isolated_env: Path) -> None:
    folder = seeded(isolated_env)
    (folder / archive.RECORD).unlink()  # each process now extracts again
    procs = [spawn_zoo("pull", "--quiet", "--with-test-data", PLUS.model_id, env={"ZOO_HOME": str(isolated_env)})
             for _ in range(3)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    assert whole(folder)
    assert [p.name for p in (isolated_env / "locks").iterdir() if p.name.startswith("extract-")] == []
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".test_data")]
    assert assert_cache_clean(isolated_env) == 2

"""Folder prediction: streaming, error rows, order, --resume after a kill, CSV/JSONL output."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import DATA, need, zoo_cli
from PIL import Image

import zoo.api as zoo
from zoo import batch
from zoo.cli import cli
from zoo.index.catalog import load_index
from zoo.store import download

MODEL = "shufflenet-v2-12-int8"


@pytest.fixture
def seeded() -> None:
    for model_id in (MODEL, "mobilenetv2-12-int8"):
        entry = load_index().resolve(model_id).entry
        download.import_file(entry, entry.file, need(DATA / "models" / entry.file.name))


def make_images(folder: Path, count: int, *, corrupt_at: int | None = None) -> list[str]:
    """`count` JPEGs made from the shared photos by cropping and resizing; one text file posing as an image."""
    photos = [Image.open(p).convert("RGB") for p in sorted(need(DATA / "images").glob("*.jp*g"))]
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(count):
        path = folder / f"img_{i:04d}.jpg"
        if i == corrupt_at:
            path.write_text("not a picture")
        else:
            photo = photos[i % len(photos)]
            w, h = photo.size
            box = (i % 7, i % 5, w - (i % 11), h - (i % 3))
            photo.crop(box).resize((200 + i % 50, 180 + i % 40)).save(path, quality=90)
        names.append(str(path))
    return names


run = zoo_cli


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_folder_run_matches_single_predicts_and_survives_a_bad_file(seeded: None, tmp_path: Path) -> None:
    names = make_images(tmp_path / "imgs", 24, corrupt_at=11)
    out = tmp_path / "out.jsonl"
    result = run("predict", MODEL, str(tmp_path / "imgs"), "-o", str(out), "--top-k", "1", code=2)
    assert "23 predicted, 1 error rows" in result.stderr  # exit 2: some rows failed
    got = rows(out)
    assert [r["input"] for r in got] == names  # one row per input, in order
    assert "error" in got[11] and names[11] in got[11]["error"]
    model = zoo.load(MODEL)
    singles = [model.predict(n, topk=1).predictions[0].index for i, n in enumerate(names) if i != 11]
    assert [r["predictions"][0]["index"] for i, r in enumerate(got) if i != 11] == singles


def test_predict_iter_batches_a_dynamic_model_in_order(seeded: None, tmp_path: Path) -> None:
    names = make_images(tmp_path / "imgs", 10)
    model = zoo.load("mobilenetv2-12-int8")
    calls: list[int] = []
    run_orig = model.run

    def counting(feeds):
        calls.append(len(next(iter(feeds.values()))))
        return run_orig(feeds)

    model.run = counting
    results = list(model.predict_iter(names, batch_size=4, topk=1))
    assert [r.input for r in results] == names
    assert sorted(calls) == [2, 4, 4]  # batches of at most 4; streams may finish in any order
    assert [r.predictions[0].index for r in results] == [model.predict(n, topk=1).predictions[0].index
                                                          for n in names]


def test_csv_output_and_glob(seeded: None, tmp_path: Path) -> None:
    make_images(tmp_path / "imgs", 5)
    (tmp_path / "imgs" / "extra.png").write_bytes((tmp_path / "imgs" / "img_0000.jpg").read_bytes())
    out = tmp_path / "out.csv"
    run("predict", MODEL, str(tmp_path / "imgs"), "--glob", "*.jpg", "-o", str(out))
    with open(out, newline="") as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == 5 and all(r["top_label"] and float(r["top_score"]) > 0 for r in table)
    assert json.loads(table[0]["predictions"])[0]["label"] == table[0]["top_label"]


def test_resume_skips_done_rows_and_a_torn_line(seeded: None, tmp_path: Path) -> None:
    names = make_images(tmp_path / "imgs", 8)
    out = tmp_path / "out.jsonl"
    run("predict", MODEL, *names[:3], "-o", str(out))
    with open(out, "a") as handle:
        handle.write('{"input": "' + names[3] + '", "mod')  # a run killed mid-write
    result = run("predict", MODEL, str(tmp_path / "imgs"), "-o", str(out), "--resume")
    assert "5 predicted, 0 error rows, 3 already in" in result.stderr
    assert [r["input"] for r in rows(out)] == names


def test_kill_then_resume_gives_exactly_one_row_per_input(seeded: None, tmp_path: Path, isolated_env: Path) -> None:
    names = make_images(tmp_path / "imgs", 120)
    out = tmp_path / "out.jsonl"
    cmd = [sys.executable, "-m", "zoo", "predict", MODEL, str(tmp_path / "imgs"), "-o", str(out), "--quiet"]
    env = {**os.environ, "ZOO_HOME": str(isolated_env)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out.exists() or out.read_text().count("\n") < 10):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    written = out.read_text().count("\n")
    assert 10 <= written < len(names)
    resumed = subprocess.run([*cmd, "--resume"], env=env, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    inputs = [r["input"] for r in rows(out)]
    assert sorted(inputs) == names and len(inputs) == len(set(inputs))


def test_a_ctrl_c_right_after_a_row_is_written_is_counted_with_that_row(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The SIGINT lands the moment the 5th row reaches the file, before the loop counts it (CI saw 15 told, 16 kept)."""
    from zoo.cli.rows import write_rows
    from zoo.prediction import Failure

    written = batch.ResultWriter.write

    def write_then_interrupt(self: batch.ResultWriter, result: Failure) -> None:
        written(self, result)
        if result.input == "img_4.jpg":
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(batch.ResultWriter, "write", write_then_interrupt)
    out = tmp_path / "out.jsonl"
    results = (Failure(f"img_{i}.jpg", MODEL, "unreadable") for i in range(9))
    with pytest.raises(KeyboardInterrupt):
        write_rows(results, total=9, desc="", output=out, resume=False, as_json=False, save=None, many=True,
                   quiet=True)
    assert [row["input"] for row in rows(out)] == [f"img_{i}.jpg" for i in range(5)]
    assert f"note: 5 of 9 rows written to {out}" in capsys.readouterr().err


def test_ctrl_c_keeps_whole_rows_and_says_how_to_resume(seeded: None, tmp_path: Path, isolated_env: Path) -> None:
    names = make_images(tmp_path / "imgs", 120)
    out = tmp_path / "out.jsonl"
    cmd = [sys.executable, "-m", "zoo", "predict", MODEL, str(tmp_path / "imgs"), "-o", str(out)]
    env = {**os.environ, "ZOO_HOME": str(isolated_env)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # a shell's & ignores it
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out.exists() or out.read_text().count("\n") < 10):
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "Traceback" not in stderr, stderr
    written = len(rows(out))  # every line whole JSON
    assert 10 <= written < len(names)
    assert (f"note: {written} of {len(names)} rows written to {out}: run the same command with --resume to do "
            "the rest") in stderr, stderr
    resumed = subprocess.run([*cmd, "--resume"], env=env, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert sorted(r["input"] for r in rows(out)) == names


def test_list_inputs(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/1.jpg", "a/2.PNG", "a/notes.txt", "a/b/3.jpeg"):
        (tmp_path / name).write_bytes(b"x")
    assert batch.list_inputs([tmp_path / "a"]) == [str(tmp_path / "a/1.jpg"), str(tmp_path / "a/2.PNG")]
    assert len(batch.list_inputs([tmp_path / "a"], recursive=True)) == 3
    assert batch.list_inputs([tmp_path / "a"], pattern="*.txt") == [str(tmp_path / "a/notes.txt")]


def test_resume_reads_csv_rows_over_the_csv_modules_field_limit(tmp_path: Path) -> None:
    """A detector's row holds every box: its predictions cell can pass csv's 128 KiB limit (csv.Error, exit 1)."""
    out = tmp_path / "out.csv"
    with open(out, "w", newline="") as handle:
        writer = csv.DictWriter(handle, batch.ResultWriter.CSV_FIELDS)
        writer.writeheader()
        boxes = [{"box": [1.5, 2.5, 30.5, 40.5], "label": "person", "score": 0.5}] * 3000
        writer.writerow({"input": "crowd.jpg", "predictions": json.dumps(boxes), "top_label": "person"})
        writer.writerow({"input": "empty.jpg", "predictions": "[]"})
    assert out.stat().st_size > 200_000
    limit = csv.field_size_limit()
    assert batch.done_inputs(out) == {"crowd.jpg", "empty.jpg"}
    assert csv.field_size_limit() == limit  # the process's limit is put back


def test_resume_needs_output(seeded: None, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["predict", MODEL, str(tmp_path), "--resume"])
    assert result.exit_code == 2 and "--resume needs --output" in result.output

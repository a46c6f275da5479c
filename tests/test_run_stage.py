"""The run stage seen from outside: notes, one row shape for files and folders, --save, checks before downloads."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from conftest import DATA, json_lines, need, zoo_cli
from PIL import Image
from servers import MirrorServer

import zoo.api as zoo
from zoo.errors import InputError
from zoo.index.catalog import load_index
from zoo.pipeline.answers import Classes, Detections, ImageResult
from zoo.prediction import Failure, Prediction
from zoo.store import download

IMAGES = DATA / "images"


def seed(*ids: str) -> None:
    for model_id in ids:
        entry = load_index().resolve(model_id).entry
        download.import_file(entry, entry.file, need(DATA / "models" / entry.file.name))


# -- the note says what a name resolved to, on every command -------------------------------------------


@pytest.mark.parametrize("command", [
    ["info", "mnist"], ["pull", "mnist"], ["predict", "mnist", "{digit}"],
    ["check", "mnist", "--test-data", "{testdata}"], ["bench", "mnist", "--runs", "2", "--warmup", "0"]])
def test_every_command_prints_the_same_note(command: list[str]) -> None:
    seed("mnist-12")
    digit = need(IMAGES / "digits" / "mnist_7.jpg")
    testdata = need(DATA / "testdata" / "mnist-legacy-npz")
    args = [a.format(digit=digit, testdata=testdata) for a in command]
    result = zoo_cli(*args)
    expected = load_index().resolve("mnist").note
    assert expected and expected.startswith("'mnist' resolved to mnist-12 by alias")
    assert f"note: {expected}" in result.stderr.splitlines()


def test_a_bare_name_that_is_also_a_file_here_is_the_model_and_says_so(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    seed("mnist-8")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mnist-8").write_bytes(b"not a model")
    located = zoo.locate("mnist-8")
    assert located.entry is not None and located.entry.id == "mnist-8" and located.path is None
    assert located.note == ("'mnist-8' is a zoo model name; the file ./mnist-8 here was not used "
                            "(pass ./mnist-8 to run it)")
    # The documented rule for files: a folder part or .onnx makes it a path.
    assert zoo.locate(Path("mnist-8")).path == Path("mnist-8")
    with pytest.raises(InputError, match="no such model file"):
        zoo.locate("./missing.onnx")


# -- files and folders give the same rows ----------------------------------------------------------------


def photos(folder: Path) -> list[str]:
    folder.mkdir()
    names = []
    for name in ("frog.jpg", "banana.jpg", "goldfish.jpg"):
        shutil.copy(need(IMAGES / name), folder / name)
        names.append(str(folder / name))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 torn")
    return sorted([*names, str(folder / "broken.jpg")])


def test_files_and_folders_give_the_same_rows_and_one_json_shape(tmp_path: Path) -> None:
    seed("mobilenetv2-12-int8")
    names = photos(tmp_path / "imgs")
    listed = zoo_cli("predict", "mobilenetv2-12-int8", *names, "--json", "--top-k", "1", code=2)
    folder = zoo_cli("predict", "mobilenetv2-12-int8", str(tmp_path / "imgs"), "--json", "--top-k", "1", code=2)
    one = zoo_cli("predict", "mobilenetv2-12-int8", names[0], "--json", "--top-k", "1")
    rows_listed, rows_folder = json_lines(listed.stdout), json_lines(folder.stdout)
    assert rows_listed == rows_folder and [r["input"] for r in rows_listed] == names
    bad = rows_listed[names.index(str(tmp_path / "imgs" / "broken.jpg"))]
    assert set(bad) >= {"input", "model", "error"} and "broken.jpg" in bad["error"]
    good = [r for r in rows_listed if "error" not in r]
    assert all(list(r) == ["input", "model", "provider", "task", "predictions"] for r in good)
    assert json_lines(one.stdout) == [r for r in rows_listed if r["input"] == names[0]]  # same shape for one input
    assert "3 predicted, 1 error rows" in listed.stderr and "3 predicted, 1 error rows" in folder.stderr


def test_text_mode_sends_error_rows_to_stderr(tmp_path: Path) -> None:
    seed("mobilenetv2-12-int8")
    names = photos(tmp_path / "imgs")
    result = zoo_cli("predict", "mobilenetv2-12-int8", *names, code=2)
    assert "broken.jpg" not in result.stdout and result.stdout.count("(mobilenetv2-12-int8 on ") == 3
    assert f"error: {tmp_path / 'imgs' / 'broken.jpg'}: " in result.stderr


# -- --save with several inputs --------------------------------------------------------------------------


def test_save_with_several_inputs_writes_a_folder(tmp_path: Path) -> None:
    seed("version-RFB-320")
    inputs = [need(IMAGES / "ultraface_1.jpg"), need(IMAGES / "age_gender_baby.jpg")]
    out = tmp_path / "annotated"
    zoo_cli("predict", "ultraface-320", *map(str, inputs), "--save", str(out))
    for image in inputs:
        saved = out / f"{image.stem}.version-RFB-320.png"
        assert Image.open(saved).size == Image.open(image).size


@pytest.mark.parametrize(("target", "words"), [
    ("{tmp}/missing/out.png", "does not exist"),
    ("{tmp}", "is a folder"),
    ("{tmp}/out.txt", "unknown image extension"),
    ("", "empty string"),
])
def test_bad_save_targets_are_refused_before_any_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          target: str, words: str) -> None:
    with served_mnist(monkeypatch) as server:
        result = zoo_cli("predict", "mnist-8", str(need(IMAGES / "digits" / "mnist_3.jpg")), "--save",
                         target.format(tmp=tmp_path), code=2)
        assert server.requests == []
    assert words in result.stderr and "hint:" in result.stderr and "Traceback" not in result.output


@pytest.mark.parametrize(("args", "words"), [
    (["-o", "{tmp}/rows.txt"], "unsupported output file"),
    (["-o", "{tmp}/nope/rows.jsonl"], "does not exist"),
    (["-o", "{tmp}"], "unsupported output file"),
    (["--save", "{tmp}/file.png", "{digit}"], "is a file, but there are several inputs"),
])
def test_bad_output_targets_are_refused_before_any_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            args: list[str], words: str) -> None:
    digit = str(need(IMAGES / "digits" / "mnist_3.jpg"))
    (tmp_path / "file.png").write_bytes(b"x")
    filled = [a.format(tmp=tmp_path, digit=digit) for a in args]
    with served_mnist(monkeypatch) as server:
        result = zoo_cli("predict", "mnist-8", digit, *filled, code=2)
        assert server.requests == []
    assert words in result.stderr


@pytest.mark.parametrize("value", ["", "{tmp}/no-such.jpg"])
def test_missing_inputs_are_refused_before_any_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        value: str) -> None:
    with served_mnist(monkeypatch) as server:
        result = zoo_cli("predict", "mnist-8", value.format(tmp=tmp_path), code=2)
        assert server.requests == []
    assert ("empty string" if not value else "no such input") in result.stderr


class served_mnist:  # noqa: N801 - a context manager read as a phrase
    """A loopback mirror holding mnist-8, set as ZOO_MIRROR, with its request log."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        entry = load_index().resolve("mnist-8").entry
        data = need(DATA / "models" / "mnist-8.onnx").read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry.sha256
        self.server = MirrorServer({entry.file.path: data})
        self.monkeypatch = monkeypatch

    def __enter__(self) -> MirrorServer:
        server = self.server.__enter__()
        self.monkeypatch.setenv("ZOO_MIRROR", server.url)
        return server

    def __exit__(self, *exc: object) -> None:
        self.server.__exit__(*exc)


def test_the_mirror_helper_does_serve_when_the_targets_are_fine(monkeypatch: pytest.MonkeyPatch) -> None:
    """The counter-test of the refusals above: with good targets the same setup downloads."""
    with served_mnist(monkeypatch) as server:
        zoo_cli("predict", "mnist-8", str(need(IMAGES / "digits" / "mnist_3.jpg")), "--quiet")
        assert len(server.requests) >= 1


# -- typed results ---------------------------------------------------------------------------------------


def test_predictions_are_typed_and_render_by_type(tmp_path: Path) -> None:
    seed("mobilenetv2-12-int8", "version-RFB-640", "super-resolution-10")
    frog = str(need(IMAGES / "frog.jpg"))
    top = zoo.load("mobilenetv2-12-int8").predict(frog, topk=2)
    assert isinstance(top, Prediction) and isinstance(top.predictions, Classes)
    assert str(top).splitlines()[1].split()[:3] == ["1.", "tree", "frog"]
    faces = zoo.load("ultraface").predict(str(need(IMAGES / "age_gender_baby.jpg")))
    assert isinstance(faces.predictions, Detections) and len(faces.predictions) == 1
    html = faces._repr_html_()
    assert "data:image/png;base64," in html and "face" in html
    saved = faces.save(tmp_path / "face.png")
    assert Image.open(saved).size == Image.open(IMAGES / "age_gender_baby.jpg").size
    big = zoo.load("super-resolution-10").predict(frog)
    assert isinstance(big.predictions, ImageResult) and "data:image/png" in big._repr_html_()
    assert "tree frog" in top._repr_html_()
    # Rows from another process come back typed.
    again = Prediction.from_dict(json.loads(json.dumps(top.to_dict())))
    assert isinstance(again.predictions, Classes) and again.to_dict() == top.to_dict()
    assert Failure("x.jpg", "m", "unreadable", "try another").to_dict() == {
        "input": "x.jpg", "model": "m", "error": "unreadable", "hint": "try another"}


def test_tabular_rows_render_labels_and_regressor_values() -> None:
    from zoo.pipeline import render
    from zoo.pipeline.answers import Rows, from_plain
    from zoo.pipeline.tabular import TabularPrediction

    head = render.Header("rows.csv[0]", "m", "CPUExecutionProvider")
    value = Rows((TabularPrediction(None, (), None, 3.25),))
    label = Rows((TabularPrediction("virginica", (("setosa", 0.1), ("virginica", 0.9)), 2),))
    assert render.text(head, value).splitlines()[1] == "  value 3.25"
    assert render.text(head, label).splitlines()[1] == "  label virginica  (setosa: 0.100, virginica: 0.900)"
    for rows in (value, label):  # rows that crossed a process boundary come back the same
        assert from_plain("tabular", rows.to_dict()).to_dict() == rows.to_dict()


def test_mirror_export_refuses_an_empty_dir_instead_of_writing_here(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = zoo_cli("mirror", "export", "", code=2)
    assert "DIR is an empty string" in result.stderr and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("out", ["{tmp}/missing/m.onnx", "{tmp}", ""])
def test_export_refuses_a_bad_target_before_any_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         out: str) -> None:
    with served_mnist(monkeypatch) as server:
        result = zoo_cli("export", "mnist-8", out.format(tmp=tmp_path), code=2)
        assert server.requests == []
    assert "cannot write the exported model" in result.stderr and "hint:" in result.stderr


def test_serve_without_its_extra_says_how_to_install_it() -> None:
    import subprocess
    import sys

    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] == 'starlette':\n"
            "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
            "sys.meta_path.insert(0, Block())\n"
            "from zoo.cli import main\n"
            "sys.argv = ['zoo', 'serve']\n"
            "main()\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "needs the serve extra" in proc.stderr and "pip install 'zoo-client[serve]'" in proc.stderr
    assert "Traceback" not in proc.stderr

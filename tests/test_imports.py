"""The CLI starts fast: list, info and --help never import the heavy libraries."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("numpy", "onnxruntime", "onnx", "PIL", "requests", "huggingface_hub", "tqdm", "filelock")

SCRIPT = """
import json, sys
from zoo.cli import cli
try:
    cli({args!r}, prog_name="zoo")
except SystemExit as exc:
    assert exc.code in (0, None), exc.code
print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)), file=sys.stderr)
"""


@pytest.mark.parametrize("args", [["--help"], ["list"], ["list", "--json"], ["info", "vgg 19"], ["search", "yolo"],
                                  ["info", "resnet50", "--json"]])
def test_cli_does_not_import_heavy_modules(args: list[str]) -> None:
    proc = subprocess.run([sys.executable, "-c", SCRIPT.format(args=args, heavy=HEAVY)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stderr.strip().splitlines()[-1]) == []
    assert proc.stdout  # the command did print its result


def test_import_zoo_is_light() -> None:
    code = (f"import sys, zoo; assert callable(zoo.load) and callable(zoo.pull) and zoo.Model; "
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


# What `zoo.load` of a cached model (its optimised graph cached too) must not import: the download stack,
# the answer types (they come with the first run), did-you-mean suggestions, and the stdlib modules only
# writers need. Each cost milliseconds of every cold load (issue 15: cold load within 1.2x raw onnxruntime).
NOT_ON_THE_LOAD_PATH = ("zoo.store.pull", "zoo.store.download", "zoo.store.sources", "zoo.prediction",
                        "zoo.pipeline.preprocess", "difflib", "hashlib", "shutil", "uuid", "tempfile")

LOAD_SCRIPT = """
import json, sys
{load}
print(json.dumps(sorted(sys.modules)))
"""


def _modules_after(load: str) -> set[str]:
    code = LOAD_SCRIPT.format(load=load)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_loading_a_cached_model_imports_no_download_stack_and_no_suggestions() -> None:
    from conftest import DATA, need

    from zoo.index.catalog import load_index
    from zoo.store import download

    entry = load_index().resolve("mnist-8").entry
    path = download.import_file(entry, entry.file, need(DATA / "models" / entry.file.name)).path
    _modules_after("import zoo; zoo.load('mnist-8')")  # the first load writes the optimised graph
    zoo = _modules_after("import zoo; m = zoo.load('mnist-8'); assert m.name == 'mnist-8'")
    raw = _modules_after(f"import onnxruntime as ort; ort.InferenceSession({str(path)!r}, "
                         "providers=['CPUExecutionProvider'])")
    assert "zoo.model" in zoo and "onnxruntime" in zoo
    # Only what zoo adds counts: an onnxruntime release that imports one of these itself is not zoo's cost.
    assert sorted(m for m in NOT_ON_THE_LOAD_PATH if m in zoo - raw) == []

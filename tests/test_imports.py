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

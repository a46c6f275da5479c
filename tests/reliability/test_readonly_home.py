"""A read-only ZOO_HOME (a team's shared cache, a container image): everything that only reads works.

The tests run as root, which ignores mode bits, so `chmod -R a-w` would prove nothing. Each command runs
instead in its own mount namespace (`unshare -m`) where ZOO_HOME is bind-mounted read-only: writes fail
with EROFS for root too, and nothing outside that one process sees the mount. Where unshare or mount is not
allowed, the tests skip and say so.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DATA, need
from reliability_helpers import Mirror, assert_cache_clean, assert_clear_error, use_models, zoo
from test_cache_integrity import PLUS

MOBILENET = "mobilenetv2-12-int8"
NOTE = "optimised graphs are not being kept"


def read_only(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `zoo ARGS` (or, with args[0] == "--sh", a shell line) with `home` mounted read-only, in a private
    mount namespace."""
    mount = f"mount --bind {shlex.quote(str(home))} {shlex.quote(str(home))} && " \
            f"mount -o remount,bind,ro {shlex.quote(str(home))} && "
    command = args[1] if args and args[0] == "--sh" else shlex.join([sys.executable, "-m", "zoo", *args])
    return subprocess.run(["unshare", "-m", "sh", "-c", mount + command], capture_output=True, text=True,
                          timeout=180, env={**os.environ, "ZOO_HOME": str(home), **(env or {})})


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_env: Path) -> Path:
    """A cache holding PLUS with its test data (and mobilenetv2-12-int8 when ../shared has it), then read-only."""
    use_models(monkeypatch, tmp_path / "manifests", PLUS)
    with Mirror(PLUS.files()) as mirror:
        assert zoo("pull", "--quiet", "--with-test-data", PLUS.model_id, env={"ZOO_MIRROR": mirror.url}).exit_code == 0
    model = DATA / "models" / f"{MOBILENET}.onnx"
    if model.exists():
        assert zoo("cache", "import", str(model)).exit_code == 0
    probe = read_only(isolated_env, "--sh", f"touch {shlex.quote(str(isolated_env / 'probe'))}")
    if probe.returncode == 0 or "Read-only file system" not in probe.stderr:
        pytest.skip(f"cannot make a read-only mount here (unshare -m + mount -o remount,bind,ro): {probe.stderr}")
    return isolated_env


def notes(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if NOTE in line]


def test_predict_works_with_one_note_and_clean_stdout(home: Path) -> None:
    need(DATA / "models" / f"{MOBILENET}.onnx")
    image = need(DATA / "images" / "frog.jpg")
    before = sorted(p.name for p in home.rglob("*"))
    result = read_only(home, "predict", MOBILENET, str(image), "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    row = data[0] if isinstance(data, list) else data
    assert "frog" in row["predictions"][0]["label"]  # top-1 holds on every CPU; scores do not
    assert len(notes(result.stderr)) == 1, result.stderr
    assert "EP Error" not in result.stdout + result.stderr and "Traceback" not in result.stderr
    assert "ONNX model" not in result.stderr  # nothing blames the model file for the cache's permissions
    assert sorted(p.name for p in home.rglob("*")) == before


def test_check_info_list_ls_verify_work(home: Path) -> None:
    check = read_only(home, "check", PLUS.model_id, "--json")
    assert check.returncode == 0, check.stderr
    assert json.loads(check.stdout)[0]["passed"] and "EP Error" not in check.stdout
    assert len(notes(check.stderr)) <= 1  # a graph this small may be built with basic optimisation only
    for args in (["info", PLUS.model_id, "--json"], ["list", "--json"], ["cache", "ls", "--json"],
                 ["cache", "verify", "--json"]):
        result = read_only(home, *args)
        assert result.returncode == 0, (args, result.stderr)
        json.loads(result.stdout)
        assert "Traceback" not in result.stderr and "EP Error" not in result.stdout
    verified = json.loads(read_only(home, "cache", "verify", "--json").stdout)
    assert len(verified) >= 2 and all(r["ok"] for r in verified)


def test_writing_commands_fail_clearly(home: Path) -> None:
    result = read_only(home, "cache", "rm", PLUS.model_id, "--yes")
    assert result.returncode in (0, 2) and "Traceback" not in result.stderr, result.stderr
    assert "Read-only" in result.stderr or "kept" in result.stderr
    assert assert_cache_clean(home) >= 2  # nothing was half deleted


def test_zoo_home_that_is_a_file_is_a_clear_error(tmp_path: Path) -> None:
    file = tmp_path / "home-file"
    file.write_text("not a folder")
    for args in (["cache", "ls"], ["cache", "dir"], ["pull", "mnist-8"], ["list"], ["cache", "clear", "--yes"]):
        result = zoo(*args, env={"ZOO_HOME": str(file)})
        assert_clear_error(result, 2, "is a file, not a folder", str(file))
    assert file.read_text() == "not a folder"


def test_zoo_home_with_a_name_too_long_is_a_clear_error(tmp_path: Path) -> None:
    """A path component over the file system's 255 bytes: ENAMETOOLONG was an exit 1, echoing the whole name."""
    home = tmp_path / ("h" * 300)
    for args in (["cache", "ls"], ["pull", "mnist-8"], ["list"]):
        result = zoo(*args, env={"ZOO_HOME": str(home)})
        assert_clear_error(result, 2, "ZOO_HOME", "cannot be used: File name too long",
                           f"({len(str(home))} characters)")
        assert "h" * 200 not in result.stderr  # clipped

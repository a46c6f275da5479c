"""Disk full while downloading, simulated with RLIMIT_FSIZE in the `zoo pull` process.

With SIGXFSZ ignored, a write past the limit fails with EFBIG ("File too large") instead of killing the
process, as a full disk fails with ENOSPC. The pull must fail clearly, keep at most a correct prefix as a
resumable partial, leave the models already cached intact, and a later pull without the limit completes.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from reliability_helpers import (
    MIB,
    Mirror,
    assert_cache_clean,
    blob_of,
    partial_of,
    synthetic,
    use_models,
    zoo,
)

CACHED = synthetic("rel-disk-cached", MIB + 17, seed=41)
BIG = synthetic("rel-disk-big", 4 * MIB, seed=42)
SPACE = re.compile(r"space|disk|too large|size limit", re.IGNORECASE)


# `python -c LIMITED LIMIT ARGS...` runs `zoo ARGS...` with files capped at LIMIT bytes. Set in the child itself,
# not through Popen(preexec_fn=...): this process runs the mirror's threads, and preexec_fn is unsafe with threads.
LIMITED = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
limit = int(sys.argv.pop(1))
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
from zoo.cli import main
main()
"""


def pull_with_file_size_limit(limit: int, model_id: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", LIMITED, str(limit), "pull", "--quiet", model_id],
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("limit", [300_000, 2 * MIB + 12_345], ids=["inside-first-chunk", "inside-third-chunk"])
def test_disk_full_fails_clearly_and_resumes(
    limit: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_env: Path
) -> None:
    use_models(monkeypatch, tmp_path / "manifests", CACHED, BIG)
    with Mirror({**CACHED.files(), **BIG.files()}) as mirror:
        monkeypatch.setenv("ZOO_MIRROR", mirror.url)
        assert zoo("pull", "--quiet", CACHED.model_id).exit_code == 0

        proc = pull_with_file_size_limit(limit, BIG.model_id)
        assert proc.returncode not in (0, 1), proc.stderr  # 1 would be an unexpected error (a bug)
        assert "error: " in proc.stderr and "Traceback" not in proc.stderr and SPACE.search(proc.stderr), proc.stderr
        assert proc.stdout == ""
        assert not blob_of(isolated_env, BIG).exists()
        partial = partial_of(isolated_env, BIG)
        kept = partial.stat().st_size if partial.exists() else None
        assert kept is None or (kept <= limit and partial.read_bytes() == BIG.data[:kept])
        assert assert_cache_clean(isolated_env) == 1
        assert zoo("cache", "verify", CACHED.model_id).exit_code == 0

        before = len(mirror.gets(BIG.path))
        again = zoo("pull", "--quiet", BIG.model_id)
        assert again.exit_code == 0, again.stderr
        assert Path(again.stdout.strip()).read_bytes() == BIG.data
        resumed = [r.range for r in mirror.gets(BIG.path)[before:]]
        assert resumed == ([f"bytes={kept}-"] if kept else [None])
    assert assert_cache_clean(isolated_env) == 2

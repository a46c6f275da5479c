"""`zoo pull` against faulty mirrors: each fault ends in a verified file or a clear error, never bad bytes cached.

Two loopback mirrors (ZOO_MIRROR="A,B"): A misbehaves as the row says, B is good. The Hugging Face
endpoint is the discard port, so a row that gets past both mirrors fails instead of reaching the internet.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
from reliability_helpers import (
    MIB,
    Mirror,
    assert_cache_clean,
    assert_clear_error,
    blob_of,
    partial_of,
    synthetic,
    use_models,
    zoo,
)
from servers import Fault

from zoo.store.download import MAX_REDIRECTS

MODEL = synthetic("rel-fault-1", 2 * MIB + 4321, seed=1)  # three 1 MiB chunks
CUT = MIB + MIB // 2  # inside the second chunk: every byte received before the cut reaches the partial
RESUME = f"bytes={CUT}-"


@dataclass(frozen=True)
class Row:
    """What mirror A does, and what the pull must look like."""

    faults: tuple[Fault, ...] = ()  # one per GET of A; with `forever`, the last one stays
    forever: bool = False
    resets: tuple[int, ...] = ()  # fault-free bodies of A cut by a TCP RST after this many bytes
    env: dict[str, str] = field(default_factory=dict)
    ranges: tuple[str | None, ...] = (None,)  # the Range header of each GET A sees
    served_by: Literal["A", "B"] = "A"
    words: tuple[str, ...] = ()  # in stderr (retry notes or the failure of A)
    min_seconds: float = 0.0


ROWS = [
    pytest.param(Row(faults=(Fault(corrupt_at=12345),), forever=True, served_by="B",
                     words=("wrong bytes", "bad bytes deleted", "trying the next source")), id="corrupted-bytes"),
    pytest.param(Row(faults=(Fault(drop_after=CUT),), ranges=(None, RESUME),
                     words=("connection closed", "retry 1/3")), id="truncated-body"),
    pytest.param(Row(resets=(CUT,), ranges=(None, RESUME), words=("connection reset", "retry 1/3")),
                 id="connection-reset"),
    pytest.param(Row(faults=(Fault(stall=30, stall_at=CUT),), env={"ZOO_TIMEOUT": "0.5"}, ranges=(None, RESUME),
                     words=("timed out", "retry 1/3")), id="stall-mid-body-then-resume"),
    pytest.param(Row(faults=(Fault(drop_after=CUT), Fault(corrupt_at=CUT + 10)), ranges=(None, RESUME, None),
                     words=("resumed bytes did not verify",)), id="corrupt-after-resume"),
    pytest.param(Row(faults=(Fault(status=500),), ranges=(None, None), words=("HTTP 500", "retry 1/3")),
                 id="500-then-200"),
    pytest.param(Row(faults=(Fault(status=429, headers={"Retry-After": "1"}),), ranges=(None, None),
                     words=("HTTP 429", "in 1.00s"), min_seconds=0.9), id="429-retry-after"),
    pytest.param(Row(faults=(Fault(drop_after=CUT), Fault(ignore_range=True)), ranges=(None, RESUME),
                     words=("ignored the Range request",)), id="range-ignored-on-resume"),
    pytest.param(Row(faults=(Fault(drop_after=CUT), Fault(bad_range=True)), ranges=(None, RESUME, None),
                     words=("got Content-Range",)), id="bad-content-range"),
    # A Content-Length no int() reads ("²" passes str.isdigit(); int() refuses 4300+ digits): read to the end
    pytest.param(Row(faults=(Fault(declared_length="\u00b2"),)), id="superscript-content-length"),
    pytest.param(Row(faults=(Fault(declared_length="9" * 5000),)), id="endless-content-length"),
    pytest.param(Row(faults=(Fault(redirect_loop=True),), forever=True, ranges=(None,) * (MAX_REDIRECTS + 1),
                     served_by="B", words=("TooManyRedirects", "trying the next source")), id="redirect-loop"),
    pytest.param(Row(faults=(Fault(stall=30),), forever=True, env={"ZOO_TIMEOUT": "0.5", "ZOO_RETRIES": "1"},
                     served_by="B", words=("timed out", "trying the next source")), id="hang-read-timeout"),
]


@pytest.fixture
def mirrors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    use_models(monkeypatch, tmp_path / "manifests", MODEL)
    with Mirror(MODEL.files()) as a, Mirror(MODEL.files()) as b:
        monkeypatch.setenv("ZOO_MIRROR", f"{a.url},{b.url}")
        yield a, b


@pytest.mark.parametrize("row", ROWS)
def test_fault_ends_in_a_verified_file(
    row: Row, mirrors: tuple[Mirror, Mirror], isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = mirrors
    for name, value in row.env.items():
        monkeypatch.setenv(name, value)
    if row.faults:
        a.inject(MODEL.path, *row.faults, forever=row.forever)
    a.resets.extend(row.resets)

    started = time.monotonic()
    result = zoo("pull", "--quiet", "--json", MODEL.model_id)
    elapsed = time.monotonic() - started

    assert result.exit_code == 0, result.stderr
    [pulled] = json.loads(result.stdout)
    assert Path(pulled["path"]).read_bytes() == MODEL.data
    assert pulled["source"].startswith((a if row.served_by == "A" else b).url)
    assert tuple(r.range for r in a.gets(MODEL.path)) == row.ranges
    assert len(b.gets()) == (1 if row.served_by == "B" else 0)
    for word in row.words:
        assert word in result.stderr, result.stderr
    assert elapsed >= row.min_seconds
    assert not partial_of(isolated_env, MODEL).exists()
    assert assert_cache_clean(isolated_env) == 1


def test_all_sources_bad_exits_3_naming_each(mirrors: tuple[Mirror, Mirror], isolated_env: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = mirrors
    monkeypatch.setenv("ZOO_RETRIES", "2")
    a.inject(MODEL.path, Fault(status=500), forever=True)
    b.inject(MODEL.path, Fault(corrupt_at=7), forever=True)
    result = zoo("pull", "--quiet", MODEL.model_id)
    assert_clear_error(
        result, 3,
        f"could not download {MODEL.model_id}", f"{len(MODEL.data)} bytes", "from any of 4 sources",
        f"{a.url}/{MODEL.path}: HTTP 500", "gave up after 2 attempts",
        f"{b.url}/{MODEL.path}: wrong bytes", "connection refused",
        "hint: check the network", f"zoo cache import FILE --id {MODEL.model_id}",
    )
    assert result.stdout == ""
    assert (len(a.gets()), len(b.gets())) == (2, 1)  # wrong bytes are not fetched twice from one source
    assert not blob_of(isolated_env, MODEL).exists() and not partial_of(isolated_env, MODEL).exists()
    assert assert_cache_clean(isolated_env) == 0

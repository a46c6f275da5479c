"""What every benchmark shares: rows of the report, targets, timing and isolation helpers."""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
MODELS = SHARED / "data" / "models"
IMAGES = SHARED / "data" / "images"


@dataclass(frozen=True)
class Config:
    """How hard to measure: full runs, or tiny sizes and few repeats for CI (`--smoke`)."""

    smoke: bool = False

    def pick(self, full: Any, smoke: Any) -> Any:
        return smoke if self.smoke else full


@dataclass(frozen=True)
class Target:
    """A goal for one row: its text for the table and how to check (zoo, baseline, ratio) against it."""

    text: str
    check: Callable[[float, float, float], bool] | None  # None: informational, nothing to meet


INFO = Target("—", None)


def ratio_at_most(limit: float) -> Target:
    return Target(f"ratio <= {limit:.2f}", lambda zoo, base, ratio: ratio <= limit)


def ratio_at_least(limit: float) -> Target:
    return Target(f"ratio >= {limit:.2f}", lambda zoo, base, ratio: ratio >= limit)


def value_at_most(limit: float, text: str) -> Target:
    return Target(text, lambda zoo, base, ratio: zoo <= limit)


def over_baseline_at_most(limit: float, text: str) -> Target:
    return Target(text, lambda zoo, base, ratio: zoo - base <= limit)


@dataclass(frozen=True)
class Row:
    """One line of the report."""

    name: str
    zoo: str
    baseline: str
    ratio: str
    target: str
    met: str  # yes, no, n/a (baseline missing), skipped (../shared missing), error, — (informational)
    notes: str = ""

    @classmethod
    def error(cls, name: str, exc: BaseException) -> Row:
        message = f"{type(exc).__name__}: {exc}".replace("\n", " ").replace("|", "/")
        return cls(name, "—", "—", "—", "—", "error", message[:300])

    @classmethod
    def skipped(cls, name: str, why: str) -> Row:
        return cls(name, "—", "—", "—", "—", "skipped", why)


class MissingDataError(FileNotFoundError):
    """A ../shared file a benchmark needs is absent: its rows say "skipped", not "error"."""


def compare(name: str, zoo: float, base: float | None, fmt: Callable[[float], str], target: Target,
            notes: str = "", *, ratio: float | None = None) -> Row:
    """A row comparing a zoo figure with its baseline (None: the baseline could not run).

    `ratio` defaults to zoo / base; pass the median of paired ratios when the runs were paired.
    """
    if base is None:
        met = "n/a" if target.check else "—"
        return Row(name, fmt(zoo), "n/a", "—", target.text, met, notes)
    ratio = zoo / base if ratio is None else ratio
    met = "—" if target.check is None else ("yes" if target.check(zoo, base, ratio) else "no")
    return Row(name, fmt(zoo), fmt(base), f"{ratio:.2f}", target.text, met, notes)


def guarded(name: str, measure: Callable[[], list[Row]]) -> list[Row]:
    """Run one measurement; an exception becomes an error row instead of ending the suite."""
    try:
        return measure()
    except MissingDataError as exc:
        return [Row.skipped(name, str(exc))]
    except Exception as exc:
        return [Row.error(name, exc)]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds >= 0.01 else f"{seconds * 1000:.3f} ms"


def mb_per_s(rate: float) -> str:
    return f"{rate:.0f} MB/s"


def median(values: list[float]) -> float:
    return statistics.median(values)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds one call of `fn` took, and what it returned."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def interleaved(runs: int, fns: dict[str, Callable[[], Any]]) -> dict[str, list[float]]:
    """Time each fn `runs` times, taking turns and rotating who goes first (A B, B A, ...).

    Taking turns spreads drift on a shared machine over all fns alike; rotating cancels
    what one run leaves behind for the next (onnxruntime's spinning worker threads, dirty pages).
    """
    times: dict[str, list[float]] = {key: [] for key in fns}
    for n in range(runs):
        for key in in_turn(list(fns), n):
            times[key].append(timed(fns[key])[0])
    return times


def in_turn(keys: list[str], n: int) -> list[str]:
    """`keys` rotated so that run `n` starts with a different one each time."""
    return keys[n % len(keys):] + keys[: n % len(keys)]


def paired_ratio(zoo: list[float], base: list[float]) -> float:
    """Median of the per-run ratios zoo[i] / base[i]: steadier than a ratio of medians when runs are paired."""
    return median([z / b for z, b in zip(zoo, base)])


@contextmanager
def scratch(prefix: str) -> Iterator[Path]:
    """A temporary directory, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix=f"zoo-bench-{prefix}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def environ(**values: str | None) -> Iterator[None]:
    """Set (or, with None, unset) environment variables for the block."""
    saved = {key: os.environ.get(key) for key in values}
    try:
        for key, value in values.items():
            _set(key, value)
        yield
    finally:
        for key, value in saved.items():
            _set(key, value)


def _set(key: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(key, None)
    else:
        os.environ[key] = value


def need(path: Path) -> Path:
    """`path`, or a clear error naming the missing ../shared file."""
    if not path.exists():
        raise MissingDataError(f"needs {path} (the ../shared data beside the repo), which is absent")
    return path


def seeded_home(root: Path, model_id: str) -> tuple[Any, Path]:
    """A zoo cache under `root` holding `model_id`, imported from ../shared; returns (entry, model path)."""
    from zoo.index.catalog import load_index
    from zoo.store import download

    entry = load_index().resolve(model_id).entry
    result = download.import_file(entry, entry.file, need(MODELS / f"{model_id}.onnx"), root=root)
    return entry, result.path

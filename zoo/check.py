"""Check a model against the zoo's own test data: test_data_set_*/input_*.pb -> output_*.pb.

Tolerances (documented in README):
- float models: every output element within |got - expected| <= atol + rtol * |expected|,
  rtol 1e-3, atol 1e-4 (the ONNX backend tests' rtol, an atol that forgives float noise on
  near-zero logits);
- int8 / qdq models: top-1 (argmax over the last axis) must agree, and the largest
  difference must stay within 10% of the expected outputs' range: quantized kernels
  legitimately differ between onnxruntime versions and CPUs;
- old archives' .npz sets hold one-hot labels as outputs: compared by top-1 only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from zoo.errors import InputError, ZooError

if TYPE_CHECKING:
    import numpy as np

Mode = Literal["allclose", "top1", "labels"]
FLOAT_RTOL, FLOAT_ATOL, QUANT_RANGE_SHARE = 1e-3, 1e-4, 0.10


@dataclass(frozen=True, slots=True)
class TestSet:
    """One set of inputs and expected outputs, in graph order (names may be empty)."""

    name: str
    inputs: tuple[tuple[str, Any], ...]
    outputs: tuple[tuple[str, Any], ...]
    labels_only: bool = False  # legacy .npz: outputs are one-hot labels


@dataclass(frozen=True, slots=True)
class OutputCheck:
    """One output of one set, compared."""

    set: str
    output: str
    mode: Mode
    max_abs_diff: float | None  # None in "labels" mode: logits vs one-hot labels have no meaningful diff
    top1_expected: int | None
    top1_got: int | None
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        return {"set": self.set, "output": self.output, "mode": self.mode, "max_abs_diff": self.max_abs_diff,
                "top1_expected": self.top1_expected, "top1_got": self.top1_got, "passed": self.passed}


@dataclass(frozen=True, slots=True)
class CheckReport:
    """All comparisons of one model on one provider."""

    model: str
    provider: str
    against: str  # "test data" or the provider compared with
    checks: tuple[OutputCheck, ...]

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "provider": self.provider, "against": self.against, "passed": self.passed,
                "checks": [c.to_dict() for c in self.checks]}


def _read_pb(path: Path) -> tuple[str, Any]:
    import onnx
    from onnx import numpy_helper

    tensor = onnx.TensorProto()
    try:
        tensor.ParseFromString(path.read_bytes())
        return tensor.name, numpy_helper.to_array(tensor)
    except Exception as exc:  # protobuf raises its own DecodeError
        raise InputError(f"cannot read test tensor {path}: {exc}", expected=["an ONNX TensorProto .pb file"]) from None


def _numbered(folder: Path, prefix: str) -> list[Path]:
    return sorted(folder.glob(f"{prefix}_*.pb"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))


def find_sets(folder: Path) -> list[TestSet]:
    """Test sets under `folder` (itself, or up to two levels down): .pb sets and legacy .npz files."""
    import numpy as np

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"no test data folder at {folder}",
                         expected=["a folder with test_data_set_*/input_*.pb (zoo pull NAME --with-test-data)"])
    dirs = sorted({p.parent for p in [*folder.glob("input_*.pb"), *folder.glob("*/input_*.pb"),
                                      *folder.glob("*/*/input_*.pb")]})
    sets = [TestSet(d.name, tuple(_read_pb(p) for p in _numbered(d, "input")),
                    tuple(_read_pb(p) for p in _numbered(d, "output"))) for d in dirs]
    for npz in sorted([*folder.glob("test_data_*.npz"), *folder.glob("*/test_data_*.npz")]):
        with np.load(npz, allow_pickle=False) as z:
            sets.append(TestSet(npz.stem, (("", z["inputs"]),), (("", z["outputs"]),), labels_only=True))
    return sets


def feeds_for(session: Any, test: TestSet) -> dict[str, Any]:
    """Feeds by graph input order; npz inputs are reshaped and cast to what the graph declares."""
    import numpy as np

    from zoo.runtime import check_feeds, numpy_dtype

    metas = session.get_inputs()
    if len(test.inputs) != len(metas):
        raise InputError(f"test set {test.name} has {len(test.inputs)} inputs, the model takes {len(metas)}",
                         expected=[f"{m.name} {m.type} {m.shape}" for m in metas])
    feeds = {}
    for meta, (name, value) in zip(metas, test.inputs):
        arr = np.asarray(value)
        if test.labels_only:
            shape = [d if isinstance(d, int) and d > 0 else 1 for d in meta.shape]
            if int(np.prod(shape)) == arr.size:
                arr = arr.reshape(shape).astype(numpy_dtype(meta.type) or arr.dtype)
        feeds[meta.name] = arr
    check_feeds(session, feeds)
    return feeds


def compare(set_name: str, output: str, got: Any, expected: Any, mode: Mode) -> OutputCheck:
    """One output against its expectation by `mode`."""
    import numpy as np

    got, expected = np.asarray(got), np.asarray(expected)
    if got.size != expected.size:
        return OutputCheck(set_name, output, mode, None, None, None, False)
    got = got.reshape(expected.shape)
    diff: float | None = float(np.abs(got.astype(np.float64) - expected.astype(np.float64)).max()) if got.size else 0.0
    t_exp, t_got = _top1(expected), _top1(got)
    if mode == "labels":
        ok, diff = t_exp == t_got, None
    elif mode == "top1":
        spread = float(expected.max() - expected.min()) if expected.size else 0.0
        ok = t_exp == t_got and diff <= QUANT_RANGE_SHARE * max(spread, 1e-6)
    else:
        ok = bool(np.allclose(got, expected, rtol=FLOAT_RTOL, atol=FLOAT_ATOL))
    return OutputCheck(set_name, output, mode, diff, t_exp, t_got, ok)


def _top1(arr: np.ndarray) -> int | None:
    import numpy as np

    if arr.dtype.kind not in "fiu" or arr.size == 0:
        return None
    return int(np.argmax(arr.reshape(-1, arr.shape[-1]) if arr.ndim else arr, axis=-1).reshape(-1)[0])


def mode_for(variant: str | None, test: TestSet) -> Mode:
    if test.labels_only:
        return "labels"
    return "top1" if variant in ("int8", "qdq") else "allclose"


def run_sets(session: Any, sets: list[TestSet], *, model: str, provider: str, variant: str | None) -> CheckReport:
    """Run every set and compare each output with its expected value."""
    names = [o.name for o in session.get_outputs()]
    checks = []
    for test in sets:
        if not test.outputs:
            raise ZooError(f"test set {test.name} has inputs but no output_*.pb to compare with",
                           hint="a test set needs its expected outputs; use --all-providers to compare providers")
        got = session.run(names, feeds_for(session, test))
        for (name, expected), value, out_name in zip(test.outputs, got, names):
            checks.append(compare(test.name, name or out_name, value, expected, mode_for(variant, test)))
    return CheckReport(model, provider, "test data", tuple(checks))


def against_provider(session: Any, reference: Any, sets: list[TestSet], *, model: str, provider: str,
                     reference_name: str, variant: str | None) -> CheckReport:
    """Outputs of `session` vs `reference` (usually CPU) on the test inputs."""
    names = [o.name for o in session.get_outputs()]
    checks = []
    for test in sets:
        feeds = feeds_for(session, test)
        for name, a, b in zip(names, session.run(names, feeds), reference.run(names, feeds)):
            checks.append(compare(test.name, name, a, b, "top1" if variant in ("int8", "qdq") else "allclose"))
    return CheckReport(model, provider, reference_name, tuple(checks))


def no_sets_error(folder: Path) -> ZooError:
    return ZooError(f"no test sets found under {folder}",
                    hint="expected test_data_set_*/input_*.pb and output_*.pb (or test_data_*.npz)")

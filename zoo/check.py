"""Check a model against the zoo's own test data: test_data_set_*/input_*.pb -> output_*.pb.

Tolerances (documented in README):
- float models: every output element within |got - expected| <= atol + rtol * |expected|,
  rtol 1e-3, atol 1e-4 (the ONNX backend tests' rtol, an atol that forgives float noise on
  near-zero logits);
- int8 / qdq models ("quantized"): what stays stable across int8 kernels must hold: top-1
  (argmax over the last axis) agrees on every row, and the Spearman rank correlation of
  got vs expected is at least 0.80. Int8 kernels of different CPUs (VNNI/AMX, AVX2, Arm)
  legitimately differ by up to tens of quantization steps, so the largest
  difference is reported (also in steps of the output's scale) but bounds nothing;
- old archives' .npz sets hold one-hot labels as outputs: compared by top-1 only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from zoo.counts import count_of
from zoo.errors import InputError, ZooError

if TYPE_CHECKING:
    import numpy as np

Mode = Literal["allclose", "quantized", "labels"]
FLOAT_RTOL, FLOAT_ATOL, QUANT_MIN_RANK_CORRELATION = 1e-3, 1e-4, 0.80
# Ops that only move or relabel values: an output's quantization scale is read through them.
_SHAPE_OPS = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Identity"})


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
    failed: tuple[str, ...] = ()  # each bound that did not hold, with its values
    rank_correlation: float | None = None  # quantized mode: Spearman, got vs expected (lowest row)
    quant_steps: float | None = None  # max |diff| in steps of the output's quantization scale, when known

    @property
    def passed(self) -> bool:
        return not self.failed

    def to_dict(self) -> dict[str, Any]:
        return {"set": self.set, "output": self.output, "mode": self.mode, "max_abs_diff": self.max_abs_diff,
                "quant_steps": self.quant_steps, "rank_correlation": self.rank_correlation,
                "top1_expected": self.top1_expected, "top1_got": self.top1_got, "passed": self.passed,
                "failed": list(self.failed)}


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
    """One TensorProto file as (name, array); InputError (exit 2) for anything malformed.

    Checked before numpy allocates: declared dims must fit the bytes the file holds (a 20-byte file
    can declare a terabyte), and external data is refused (its path could point anywhere).
    """
    import onnx
    from onnx import numpy_helper

    tensor = onnx.TensorProto()
    try:
        data = path.read_bytes()
        tensor.ParseFromString(data)
    except Exception as exc:  # protobuf raises its own DecodeError; OSError for an unreadable file
        raise _bad_tensor(path, f"it is not a readable TensorProto ({exc})") from None
    problem = _tensor_problem(tensor, len(data))
    if problem:
        raise _bad_tensor(path, problem)
    try:
        return tensor.name, numpy_helper.to_array(tensor)
    except Exception as exc:  # onnx raises ValueError, TypeError or its own errors for inconsistent fields
        raise _bad_tensor(path, f"its data does not match its type and dims ({exc})") from None


def _tensor_problem(tensor: Any, file_size: int) -> str | None:
    import onnx

    if tensor.data_location == onnx.TensorProto.EXTERNAL or tensor.external_data:
        return "it refers to external data, which zoo does not read from test sets"
    dims = list(tensor.dims)
    if any(d < 0 for d in dims):
        return f"it declares negative dims {dims}"
    count = 1
    for d in dims:
        count *= d
    # Every element takes at least half a byte in any encoding (4-bit types pack two a byte).
    if count > 2 * file_size + 16:
        return f"it declares dims {dims} ({count} values) but the file holds only {file_size} bytes"
    return None


def _bad_tensor(path: Path, why: str) -> InputError:
    return InputError(f"cannot read test tensor {path}: {why}", expected=["an ONNX TensorProto .pb file"])


def _numbered(folder: Path, prefix: str) -> list[Path]:
    """input_0.pb, input_1.pb, ... in order; InputError for another name or a gap in the numbers."""
    found: dict[int, Path] = {}
    for path in folder.glob(f"{prefix}_*.pb"):
        number = count_of(path.stem[len(prefix) + 1:])
        if number is None:
            raise InputError(f"test set {folder} has a file named {path.name}",
                             expected=[f"{prefix}_0.pb, {prefix}_1.pb, ... (numbered from 0)"])
        found[number] = path
    if sorted(found) != list(range(len(found))):
        raise InputError(f"test set {folder} has {prefix} files numbered {sorted(found)}",
                         expected=[f"{prefix}_0.pb to {prefix}_{len(found) - 1}.pb with no gaps"])
    return [found[i] for i in range(len(found))]


def find_sets(folder: Path) -> list[TestSet]:
    """Test sets under `folder` (itself, or up to two levels down): .pb sets and legacy .npz files.

    The extracted test data of a cached model is restored first when it lost files; another folder whose
    extraction record lists missing files is refused (CacheError). Malformed sets are InputError (exit 2).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"no test data folder at {folder}",
                         expected=["a folder with test_data_set_*/input_*.pb (zoo pull NAME --with-test-data)"])
    _whole(folder)
    pattern = ("{}_*.pb", "*/{}_*.pb", "*/*/{}_*.pb")
    dirs = sorted({p.parent for kind in ("input", "output") for glob in pattern
                   for p in folder.glob(glob.format(kind))}
                  | {*folder.glob("test_data_set_*"), *folder.glob("*/test_data_set_*")})
    sets = []
    for d in dirs:
        inputs = _numbered(d, "input")
        if not inputs and d.is_dir():
            raise InputError(f"test set {d} has no input_*.pb", expected=["input_0.pb ... beside output_0.pb ..."])
        if inputs:
            sets.append(TestSet(d.name, tuple(_read_pb(p) for p in inputs),
                                tuple(_read_pb(p) for p in _numbered(d, "output"))))
    sets += [_read_npz(npz) for npz in sorted([*folder.glob("test_data_*.npz"), *folder.glob("*/test_data_*.npz")])]
    return sets


def _whole(folder: Path) -> None:
    """Restore a cached model's extracted test data, or refuse a folder its extraction record calls incomplete."""
    from zoo.errors import CacheError
    from zoo.store import archive, pull

    entry = pull.entry_for_test_data(folder)
    if entry is not None:
        pull.ensure_test_data(entry)
        return
    missing = archive.missing_members(folder)
    if missing:
        raise CacheError(f"the test data at {folder} is incomplete: {len(missing)} extracted files are missing or "
                         f"changed ({', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''})",
                         hint="extract its archive again (`zoo pull NAME --with-test-data` for a zoo model)")


def _read_npz(npz: Path) -> TestSet:
    import numpy as np

    try:
        with np.load(npz, allow_pickle=False) as z:
            return TestSet(npz.stem, (("", z["inputs"]),), (("", z["outputs"]),), labels_only=True)
    except Exception as exc:  # zipfile, numpy and KeyError for a missing array
        raise InputError(f"cannot read test set {npz}: {type(exc).__name__}: {exc}",
                         expected=["an .npz holding arrays 'inputs' and 'outputs'"]) from None


def feeds_for(session: Any, test: TestSet) -> dict[str, Any]:
    """Feeds by graph input order; npz inputs are reshaped and cast to what the graph declares."""
    import numpy as np

    from zoo.runtime import check_feeds, numpy_dtype

    metas = session.get_inputs()
    if len(test.inputs) != len(metas):
        raise InputError(f"test set {test.name} has {len(test.inputs)} inputs, the model takes {len(metas)}",
                         expected=[f"{m.name} {m.type} {m.shape}" for m in metas])
    feeds = {}
    for meta, (_, value) in zip(metas, test.inputs):
        arr = np.asarray(value)
        if test.labels_only:
            shape = [d if isinstance(d, int) and d > 0 else 1 for d in meta.shape]
            if int(np.prod(shape)) == arr.size:
                arr = arr.reshape(shape).astype(numpy_dtype(meta.type) or arr.dtype)
        feeds[meta.name] = arr
    check_feeds(session, feeds)
    return feeds


def compare(set_name: str, output: str, got: Any, expected: Any, mode: Mode, *,
            scale: float | None = None) -> OutputCheck:
    """One output against its expectation by `mode`; `scale` is the output's quantization step, if any."""
    import numpy as np

    got, expected = np.asarray(got), np.asarray(expected)
    if got.size != expected.size:
        return OutputCheck(set_name, output, mode, None, None, None,
                           failed=(f"{got.size} values, expected {expected.size} (shape {list(expected.shape)})",))
    got = got.reshape(expected.shape)
    numeric = got.dtype.kind in "fiub" and expected.dtype.kind in "fiub"
    diff = float(np.abs(got.astype(np.float64) - expected.astype(np.float64)).max()) if got.size and numeric else 0.0
    t_exp, t_got = _top1_rows(expected), _top1_rows(got)
    first_exp, first_got = (t_exp[0] if t_exp else None), (t_got[0] if t_got else None)
    failed: list[str] = []
    if mode in ("labels", "quantized") and t_exp != t_got:
        agree = sum(a == b for a, b in zip(t_exp, t_got))
        failed.append(f"top-1 agrees on {agree}/{len(t_exp)} rows (first: got {first_got}, expected {first_exp})")
    if mode == "labels":
        return OutputCheck(set_name, output, mode, None, first_exp, first_got, failed=tuple(failed))
    if mode == "quantized":
        rho = _rank_correlation(got, expected)
        if rho is not None and rho < QUANT_MIN_RANK_CORRELATION:
            failed.append(f"rank correlation {rho:.3f} < {QUANT_MIN_RANK_CORRELATION:.2f}")
        steps = None if not scale else round(diff / scale, 1)
        return OutputCheck(set_name, output, mode, diff, first_exp, first_got, failed=tuple(failed),
                           rank_correlation=rho, quant_steps=steps)
    if not numeric:  # string or bool outputs (class labels) have no tolerance: they are equal or not
        if not np.array_equal(got, expected):
            failed.append(f"{int((got != expected).sum())} of {got.size} values differ (compared exactly)")
        return OutputCheck(set_name, output, mode, None, first_exp, first_got, failed=tuple(failed))
    if not np.allclose(got, expected, rtol=FLOAT_RTOL, atol=FLOAT_ATOL):
        failed.append(f"max |diff| {diff:.3g} beyond atol {FLOAT_ATOL:g} + rtol {FLOAT_RTOL:g} * |expected|")
    return OutputCheck(set_name, output, mode, diff, first_exp, first_got, failed=tuple(failed))


def _rows(arr: np.ndarray) -> np.ndarray:
    return arr.reshape(-1, arr.shape[-1]) if arr.ndim else arr.reshape(1, 1)


def _top1_rows(arr: np.ndarray) -> list[int]:
    import numpy as np

    if arr.dtype.kind not in "fiu" or arr.size == 0:
        return []
    return [int(i) for i in np.argmax(_rows(arr), axis=-1)]


def _rank_correlation(got: np.ndarray, expected: np.ndarray) -> float | None:
    """Spearman's rho per row (ties broken by position), the lowest over rows; None when undefined."""
    import numpy as np

    if got.dtype.kind not in "fiu" or expected.dtype.kind not in "fiu" or got.size == 0:
        return None
    lowest: float | None = None
    for a, b in zip(_rows(got), _rows(expected)):
        if a.size < 3:
            continue
        ra, rb = np.argsort(np.argsort(a, kind="stable")), np.argsort(np.argsort(b, kind="stable"))
        rho = float(np.corrcoef(ra, rb)[0, 1])
        lowest = rho if lowest is None else min(lowest, rho)
    return None if lowest is None else round(lowest, 4)


def output_scales(model_path: Path) -> dict[str, float]:
    """Quantization step of each graph output that comes from a DequantizeLinear with a scalar scale."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(model_path), load_external_data=False).graph
    producer = {out: node for node in graph.node for out in node.output}
    consts = {i.name: i for i in graph.initializer}
    scales = {}
    for out in graph.output:
        node = producer.get(out.name)
        while node is not None and node.op_type in _SHAPE_OPS:
            node = producer.get(node.input[0])
        if node is None or node.op_type != "DequantizeLinear" or node.input[1] not in consts:
            continue
        scale = numpy_helper.to_array(consts[node.input[1]])
        if scale.size == 1:
            scales[out.name] = float(scale.reshape(-1)[0])
    return scales


def mode_for(variant: str | None, test: TestSet) -> Mode:
    if test.labels_only:
        return "labels"
    return "quantized" if variant in ("int8", "qdq") else "allclose"


def run_sets(session: Any, sets: list[TestSet], *, model: str, provider: str, variant: str | None,
             scales: dict[str, float] | None = None) -> CheckReport:
    """Run every set and compare each output with its expected value."""
    names = [o.name for o in session.get_outputs()]
    checks = []
    for test in sets:
        if not test.outputs:
            raise ZooError(f"test set {test.name} has inputs but no output_*.pb to compare with",
                           hint="a test set needs its expected outputs; use --all-providers to compare providers")
        got = session.run(names, feeds_for(session, test))
        for (name, expected), value, out_name in zip(test.outputs, got, names):
            checks.append(compare(test.name, name or out_name, value, expected, mode_for(variant, test),
                                  scale=(scales or {}).get(out_name)))
    return CheckReport(model, provider, "test data", tuple(checks))


def against_provider(session: Any, reference: Any, sets: list[TestSet], *, model: str, provider: str,
                     reference_name: str, variant: str | None) -> CheckReport:
    """Outputs of `session` vs `reference` (usually CPU) on the test inputs."""
    names = [o.name for o in session.get_outputs()]
    checks = []
    for test in sets:
        feeds = feeds_for(session, test)
        for name, a, b in zip(names, session.run(names, feeds), reference.run(names, feeds)):
            checks.append(compare(test.name, name, a, b, "quantized" if variant in ("int8", "qdq") else "allclose"))
    return CheckReport(model, provider, reference_name, tuple(checks))


def no_sets_error(folder: Path) -> ZooError:
    return ZooError(f"no test sets found under {folder}",
                    hint="expected test_data_set_*/input_*.pb and output_*.pb (or test_data_*.npz)")

"""Execution providers and sessions: choose, build, and report what ORT really uses.

onnxruntime silently falls back to CPU when a requested provider cannot run
(missing libraries, no device, a selection policy finding no GPU). zoo compares
what was asked for with `session.get_providers()` after the session exists,
warns on stderr, and errors under `strict`. A provider name onnxruntime does not
know at all is a typo, not a missing library: that is an error.

Optimised CPU graphs are cached under the model's sha256 only: a graph is reused
when its record names that sha256 and the graph file is the one zoo wrote; it is
written under a unique temp name and moved into place, and a cache folder that is
a link or read-only is not used (with one note), never an error.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.errors import ProviderError, ZooError

if TYPE_CHECKING:
    import onnxruntime

# Best first. CPU is always last and always present.
PREFERENCE = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "MIGraphXExecutionProvider",
    "ROCMExecutionProvider",
    "DmlExecutionProvider",
    "CoreMLExecutionProvider",
    "OpenVINOExecutionProvider",
    "QNNExecutionProvider",
    "DnnlExecutionProvider",
    "ACLExecutionProvider",
    "XnnpackExecutionProvider",
    "CPUExecutionProvider",
)
SHORT_NAMES = {
    "tensorrt": "TensorrtExecutionProvider", "trt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider", "migraphx": "MIGraphXExecutionProvider", "rocm": "ROCMExecutionProvider",
    "dml": "DmlExecutionProvider", "directml": "DmlExecutionProvider", "coreml": "CoreMLExecutionProvider",
    "openvino": "OpenVINOExecutionProvider", "qnn": "QNNExecutionProvider", "dnnl": "DnnlExecutionProvider",
    "acl": "ACLExecutionProvider", "xnnpack": "XnnpackExecutionProvider", "cpu": "CPUExecutionProvider",
}
CPU = "CPUExecutionProvider"
OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")


def canonical(name: str) -> str:
    """`cuda`, `CUDA`, `CUDAExecutionProvider` -> `CUDAExecutionProvider`."""
    key = name.strip()
    short = SHORT_NAMES.get(key.lower()) or SHORT_NAMES.get(key.lower().removesuffix("executionprovider"))
    if short:
        return short
    for known in PREFERENCE:
        if known.lower() == key.lower():
            return known
    return key


def parse_providers(spec: str | Sequence[str] | None) -> list[str] | None:
    """Requested providers from an argument, else ZOO_PROVIDERS (comma-separated), else None (auto)."""
    if spec is None:
        spec = os.environ.get("ZOO_PROVIDERS") or None
    if spec is None:
        return None
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out = [canonical(p) for p in items if p.strip()]
    return out or None


@dataclass(frozen=True, slots=True)
class ProviderPlan:
    """What to ask onnxruntime for, decided before the session exists."""

    requested: tuple[str, ...] | None
    chosen: tuple[str, ...]
    missing: tuple[str, ...]


def select_providers(requested: Sequence[str] | None, available: Sequence[str]) -> ProviderPlan:
    """Pure choice: the requested providers that exist (CPU appended), or the best available."""
    avail = [p for p in available if p != "AzureExecutionProvider"]
    if requested is None:
        ranked = [p for p in PREFERENCE if p in avail]
        ranked += [p for p in avail if p not in ranked and p != CPU]
        chosen = [p for p in ranked if p != CPU] + [CPU]
        return ProviderPlan(None, tuple(chosen), ())
    requested = [canonical(p) for p in requested]
    chosen = [p for p in requested if p in avail]
    missing = [p for p in requested if p not in avail]
    if CPU not in chosen:
        chosen.append(CPU)
    return ProviderPlan(tuple(requested), tuple(dict.fromkeys(chosen)), tuple(missing))


@dataclass(frozen=True, slots=True)
class ProviderReport:
    """After the session: what was asked, what ORT uses, and whether it fell back."""

    requested: tuple[str, ...] | None
    used: tuple[str, ...]
    fell_back: tuple[str, ...]

    @property
    def primary(self) -> str:
        return self.used[0] if self.used else CPU

    def to_dict(self) -> dict[str, Any]:
        return {"requested": None if self.requested is None else list(self.requested), "used": list(self.used),
                "primary": self.primary, "fell_back": list(self.fell_back)}


def report(plan: ProviderPlan, used: Sequence[str]) -> ProviderReport:
    """Compare the plan with `session.get_providers()`: which requested providers are not in use."""
    asked = plan.requested if plan.requested is not None else plan.chosen
    fell = tuple(p for p in asked if p != CPU and p not in used)
    return ProviderReport(plan.requested, tuple(used), fell)


def policy_report(policy: str, used: Sequence[str]) -> ProviderReport:
    """A selection policy that prefers a GPU or NPU but lands on CPU only has fallen back."""
    fell = (policy,) if policy in ("PREFER_GPU", "PREFER_NPU") and tuple(used) == (CPU,) else ()
    return ProviderReport((f"policy:{policy}",), tuple(used), fell)


def check_report(rep: ProviderReport, *, strict: bool, warn: Any = None) -> None:
    """Warn on stderr (or raise under strict) when a requested provider is not in use."""
    if not rep.fell_back:
        return
    what = (f"requested execution provider(s) {', '.join(rep.fell_back)} not in use; "
            f"onnxruntime is running on {', '.join(rep.used)}")
    if strict:
        raise ProviderError(what, hint="install the onnxruntime build for that device (e.g. onnxruntime-gpu), "
                                       "check `zoo providers`, or drop --strict-provider to accept the fallback")
    (warn or _stderr)(f"warning: {what}")


def _stderr(message: str) -> None:
    sys.stderr.write(message + "\n")


MAX_THREADS = 1024  # intra-op threads per session: beyond this, a typo that would take minutes to start


# x86 CPUs without VNNI multiply u8 activations by s8 weights with PMADDUBSW, which saturates each
# 16-bit pair sum: there shufflenet-v2-12-int8 calls a cat a kit fox. onnxruntime's precision mode
# stores those weights as u8 and runs its exact U8U8 kernels instead; it acts only where MLAS
# reports that overflow (a no-op on VNNI/AMX CPUs and off x86), at some speed (BENCHMARKS.md).
EXACT_INT8 = ("session.x64quantprecision", "1")


def session_options(*, threads: int | None, optimization: str, optimized_path: Path | None,
                    spinning: bool | None = None, exact_int8: bool = True) -> Any:
    import onnxruntime as ort

    levels = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
              "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
              "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
    if optimization not in levels:
        raise ZooError(f"unknown graph optimisation level {optimization!r}",
                       hint=f"use one of {', '.join(OPTIMIZATION_LEVELS)}")
    if threads is not None and not 0 <= threads <= MAX_THREADS:
        raise ZooError(f"threads={threads}: onnxruntime would start that many threads per session",
                       hint=f"use 1 to {MAX_THREADS} (None: onnxruntime's choice, one per core)")
    so = ort.SessionOptions()
    so.graph_optimization_level = levels[optimization]
    so.log_severity_level = 4  # fatal only: zoo reports load failures and fallbacks itself
    if threads:
        so.intra_op_num_threads = threads
    if spinning is False:
        # ORT's intra-op workers busy-wait between runs; with decoding threads beside the
        # session (folder runs) that steals the cores they need.
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if exact_int8:
        so.add_session_config_entry(*EXACT_INT8)
    if optimized_path is not None:
        so.optimized_model_filepath = str(optimized_path)
    return so


@dataclass(frozen=True, slots=True)
class SessionSpec:
    """Everything that decides how a session is built (and keys its optimised-model cache)."""

    providers: tuple[str, ...] | None = None
    threads: int | None = None
    optimization: str = "all"
    strict: bool = False
    policy: str | None = None  # a plugin-EP selection policy, e.g. "PREFER_GPU"
    spinning: bool | None = None  # False: intra-op threads sleep instead of busy-waiting (None: ORT default)
    exact_int8: bool = True  # False: x86's saturating u8s8 kernels where no VNNI (faster, answers may move)


def create_session(model: Path | bytes, spec: SessionSpec, *, cache_dir: Path | None = None,
                   cache_key: str | None = None, warn: Any = None,
                   ) -> tuple[onnxruntime.InferenceSession, ProviderReport]:
    """Build an InferenceSession by `spec`, reusing a cached optimised model when one exists.

    `cache_key` must be the model's sha256 (64 lowercase hex digits) for its graph to be cached.
    Raises ProviderError for a provider name onnxruntime does not know.
    """
    import onnxruntime as ort

    from zoo.store import graphs

    _register_env_plugins()
    plugin_devices = _plugin_devices(spec.providers)
    available = [*ort.get_available_providers(), *{d.ep_name for d in plugin_devices}]
    check_names(spec.providers, [*PREFERENCE, *ort.get_all_providers(), *available])
    plan = select_providers(spec.providers, available)
    cached, target = _optimized_paths(plan, spec, cache_dir, cache_key, warn)
    source = cached if cached is not None else model
    level = "disable" if cached is not None else spec.optimization
    so = session_options(threads=spec.threads, optimization=level, optimized_path=target, spinning=spec.spinning,
                         exact_int8=spec.exact_int8)
    kwargs: dict[str, Any] = {}
    if spec.policy:
        so.set_provider_selection_policy(getattr(ort.OrtExecutionProviderDevicePolicy, spec.policy))
    elif plugin_devices:
        # Plugin EPs are engaged per device, not through providers=.
        so.add_provider_for_devices(plugin_devices, {})
    else:
        kwargs = {"providers": list(plan.chosen)}
    try:
        session = _quiet_session(ort, str(source) if isinstance(source, Path) else source, so, kwargs)
    except Exception as exc:
        if cached is not None:  # a stale or foreign optimised file: drop it and build from the model
            graphs.drop(cached)
            return create_session(model, spec, cache_dir=cache_dir, cache_key=cache_key, warn=warn)
        if target is not None:  # writing the graph may have failed (a cache that turned read-only): without it
            graphs.unlink(target)
            found = create_session(model, spec, warn=warn)  # a model that cannot load raises its own error here
            _note_unkept(target.parent, f"cannot write there ({_first_line(exc)})", warn)
            return found
        if plan.chosen != (CPU,) and not spec.policy:
            return _cpu_after_failure(model, spec, plan, exc, warn)
        raise load_error(model, exc) from None
    if target is not None:
        graphs.publish(target, cache_key or "")
    rep = report(plan, session.get_providers()) if not spec.policy else policy_report(spec.policy,
                                                                                     session.get_providers())
    check_report(rep, strict=spec.strict, warn=warn)
    return session, rep


def check_names(requested: Sequence[str] | None, known: Sequence[str]) -> None:
    """Raise ProviderError (with did-you-mean suggestions) for a name that is no execution provider at all.

    A known provider that is not available here is fine: it warns and falls back later.
    """
    names = {k.lower(): k for k in known} | dict(SHORT_NAMES)
    for name in requested or ():
        if canonical(name).lower() in names:
            continue
        import difflib  # only an unknown name needs suggestions: loading stays lighter

        close = difflib.get_close_matches(name.strip().lower(), list(names), n=3, cutoff=0.6)
        guess = f"did you mean {', '.join(close)}? " if close else ""
        raise ProviderError(f"unknown execution provider {name!r}",
                            hint=f"{guess}`zoo providers` lists the providers available here; short names such "
                                 f"as {', '.join(sorted(SHORT_NAMES)[:6])} work")


def _quiet_session(ort: Any, source: str | bytes, so: Any, kwargs: dict[str, Any]) -> Any:
    """InferenceSession(...) with onnxruntime's Python prints kept off stdout.

    On a failed load onnxruntime prints an "EP Error" banner with print() before retrying on CPU;
    stdout carries zoo's results, so the banner goes to stderr under ZOO_DEBUG and nowhere otherwise.
    """
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured):
            return ort.InferenceSession(source, so, **kwargs)
    finally:
        if captured.getvalue() and os.environ.get("ZOO_DEBUG", "") not in ("", "0"):
            _stderr(captured.getvalue().rstrip("\n"))


def _cpu_after_failure(model: Path | bytes, spec: SessionSpec, plan: ProviderPlan, exc: Exception,
                       warn: Any) -> tuple[Any, ProviderReport]:
    """A provider that cannot compile the graph makes ORT raise, not fall back: retry on CPU, say so."""
    reason = _first_line(exc)
    failed = tuple(p for p in plan.chosen if p != CPU)
    if spec.strict:
        raise ProviderError(f"{', '.join(failed)} cannot run this model: {reason}",
                            hint="drop --strict-provider to run it on CPU, or try another provider")
    session, _ = create_session(model, replace(spec, providers=(CPU,)), warn=warn)
    rep = ProviderReport(plan.requested, tuple(session.get_providers()), failed)
    (warn or _stderr)(f"warning: {', '.join(failed)} failed to load the model ({reason}); running on CPU")
    return session, rep


def _first_line(exc: Exception) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    useful = [ln for ln in lines if "Unexpected" in ln or "not supported" in ln.lower() or "error" in ln.lower()]
    return (useful or lines or [type(exc).__name__])[-1][:300]


# -- the optimised-graph cache ------------------------------------------------------------------------


def _optimized_paths(plan: ProviderPlan, spec: SessionSpec, cache_dir: Path | None, cache_key: str | None,
                     warn: Any) -> tuple[Path | None, Path | None]:
    """(existing optimised model, where to write a new one). Only plain CPU sessions are cached:
    other providers compile device-specific graphs that are not portable files."""
    if cache_dir is None or cache_key is None or plan.chosen != (CPU,) or spec.policy:
        return None, None
    if spec.optimization in ("disable", "basic"):
        return None, None
    import onnxruntime as ort

    from zoo.store import graphs

    # The saved graph holds this CPU's choices (NCHWc block size, u8 weights under EXACT_INT8): a
    # shared cache keeps one per CPU kind.
    kind = f"cpu.{spec.optimization}{'' if spec.exact_int8 else '.fastint8'}.ort{ort.__version__}.{cpu_kind()}"
    cached, target, why = graphs.locate(cache_dir, cache_key, kind)
    if why is not None:
        _note_unkept(cache_dir, why, warn)
    return cached, target


@functools.cache
def cpu_kind() -> str:
    """A short tag for this CPU's instruction set: the machine and a digest of its feature flags."""
    import platform
    import zlib  # a name, not a security check: hashlib stays out of a cached load

    flags = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
        flags = next((ln.split(":", 1)[-1] for ln in f if ln.startswith(("flags", "Features"))), "")
    # Elsewhere: Windows names the CPU in its environment (platform.processor() may fork `uname -p`).
    features = " ".join(sorted(flags.split())) or os.environ.get("PROCESSOR_IDENTIFIER", "")
    return f"{platform.machine().lower() or 'cpu'}-{zlib.crc32(features.encode()):08x}"


_NOTED: set[str] = set()


def _note_unkept(folder: Path, why: str, warn: Any) -> None:
    """Say once per folder and process that optimised graphs are not kept; loading still works."""
    if str(folder) in _NOTED:
        return
    _NOTED.add(str(folder))
    (warn or _stderr)(f"note: optimised graphs are not being kept in {folder}: {why}; "
                      "each load optimises the model again")


def load_error(model: Path | bytes, exc: Exception) -> ZooError:
    """onnxruntime refused to build a session for `model`: which file, and ORT's first line."""
    name = str(model) if isinstance(model, Path) else "<model bytes>"
    return ZooError(f"onnxruntime cannot load {name}: {_first_line(exc)}",
                    hint="check the file is an ONNX model (`zoo cache verify` re-hashes cached ones) and that "
                         "this onnxruntime supports its opset")


def available() -> list[dict[str, Any]]:
    """Available providers in zoo's preference order, with the devices ORT reports."""
    import onnxruntime as ort

    plan = select_providers(None, ort.get_available_providers())
    devices: dict[str, list[dict[str, Any]]] = {}
    for d in getattr(ort, "get_ep_devices", lambda: [])():
        devices.setdefault(d.ep_name, []).append(
            {"type": str(d.device.type).rsplit(".", 1)[-1], "vendor": d.device.vendor, "ep_vendor": d.ep_vendor})
    return [{"name": p, "rank": i + 1, "devices": devices.get(p, [])} for i, p in enumerate(plan.chosen)]


_REGISTERED: set[str] = set()


def _register_env_plugins() -> None:
    """Register the plugin EP libraries named in ZOO_EP_LIBRARIES (once per process)."""
    spec = os.environ.get("ZOO_EP_LIBRARIES", "")
    if spec and spec not in _REGISTERED:
        register_plugin_libraries(spec)
        _REGISTERED.add(spec)


def _plugin_devices(requested: Sequence[str] | None) -> list[Any]:
    """Devices of requested providers that are registered plugin EPs (not in get_available_providers())."""
    if not requested:
        return []
    import onnxruntime as ort

    builtin = set(ort.get_available_providers())
    wanted = {canonical(p) for p in requested} - builtin
    return [d for d in getattr(ort, "get_ep_devices", lambda: [])() if d.ep_name in wanted]


def register_plugin_libraries(spec: str | None = None) -> list[str]:
    """Register plugin EP libraries from `name=path` pairs (default: ZOO_EP_LIBRARIES)."""
    import onnxruntime as ort

    spec = spec if spec is not None else os.environ.get("ZOO_EP_LIBRARIES", "")
    names = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, _, path = item.partition("=")
        if not path:
            raise ZooError(f"bad plugin EP entry {item!r}", hint="use NAME=/path/to/library.so[,NAME2=...]")
        ort.register_execution_provider_library(name, path)
        names.append(name)
    return names


_ORT_TO_NUMPY = {
    "tensor(float)": "float32", "tensor(double)": "float64", "tensor(float16)": "float16",
    "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(int16)": "int16", "tensor(int8)": "int8",
    "tensor(uint8)": "uint8", "tensor(uint16)": "uint16", "tensor(bool)": "bool", "tensor(string)": "object",
}


def numpy_dtype(ort_type: str) -> str | None:
    """`tensor(float)` -> `float32` (None for sequences and maps)."""
    return _ORT_TO_NUMPY.get(ort_type)


def check_feeds(session: Any, feeds: dict[str, Any], *, metas: Sequence[Any] | None = None) -> None:
    """Refuse feeds that do not match the graph inputs, naming what is expected.

    Pass `metas` (session.get_inputs(), fetched once) on hot paths: ORT builds new
    NodeArg objects on every get_inputs() call.
    """
    from zoo.errors import InputError

    expected = {i.name: i for i in (metas if metas is not None else session.get_inputs())}
    missing = [n for n in expected if n not in feeds]
    unknown = [n for n in feeds if n not in expected]
    if missing or unknown:
        raise InputError(f"inputs do not match the model: missing {missing or 'none'}, unknown {unknown or 'none'}",
                         expected=[f"{i.name} {i.type} {i.shape}" for i in expected.values()])
    for name, value in feeds.items():
        meta = expected[name]
        want = numpy_dtype(meta.type)
        shape = getattr(value, "shape", None)
        if want is not None and str(getattr(value, "dtype", "")) != want:
            raise InputError(f"input {name!r} has dtype {getattr(value, 'dtype', type(value).__name__)}, "
                             f"the model expects {want} ({meta.type})", expected=[f"{name} {want} {meta.shape}"])
        if shape is not None and not _shape_fits(tuple(shape), meta.shape):
            raise InputError(f"input {name!r} has shape {list(shape)}, the model expects {meta.shape}",
                             expected=[f"{name} {want} {meta.shape}"])


def _shape_fits(shape: tuple[int, ...], declared: Sequence[Any]) -> bool:
    if not declared:  # scalar or unknown rank
        return True
    if len(shape) != len(declared):
        return False
    return all(not isinstance(d, int) or d <= 0 or d == s for s, d in zip(shape, declared))

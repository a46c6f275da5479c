"""Model: the one owner of running a model. resolve -> load -> prepare -> batch -> run -> decode.

`load()` resolves a name or file once (`locate`), builds the session, and chooses a
runner (zoo.runners) for the model's input kind. Every way of predicting goes through
the same public building blocks: `prepare(item)` (decode + preprocess one input, safe
in worker threads), `max_batch`, `batch_key(prepared)` (which prepared inputs may share
a run), and `run_prepared(group)` (feeds -> session -> decoded Predictions). `predict`
runs them in order; `predict_iter` overlaps prepare with runs for long inputs lists;
the Ray path and `zoo serve` use the same blocks.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo import runtime
from zoo.errors import InputError, UnknownModelError, ZooError
from zoo.filecheck import looks_like_path, unusable
from zoo.index.manifest import ImageRecipe, ModelEntry
from zoo.runners import DecodeOptions, NoRunner, Runner, is_count, is_int, select_runner
from zoo.store import cache, index_cache

if TYPE_CHECKING:
    from concurrent.futures import Future

    import numpy as np
    from onnxruntime import InferenceSession, NodeArg

    from zoo.check import CheckReport
    from zoo.pipeline.preprocess import Step
    from zoo.prediction import Prediction, Result

# zoo.prediction and zoo.store.pull are imported where they are used, not here: a cold `zoo.load` of a
# cached model needs neither (the answer types come with the first run, the download stack never).


@dataclass(frozen=True, slots=True)
class Located:
    """What a name or path given by the user turned out to be, and the note that says how."""

    entry: ModelEntry | None
    path: Path | None  # a local file; None for a zoo model (its cached file is found or pulled)
    note: str | None


def locate(name_or_path: str | Path, opset: int | None = None) -> Located:
    """Decide once whether the user means a local file or a zoo model (see looks_like_path).

    A local file whose sha256 is a zoo model's gets that model's manifest (recipe, labels,
    postprocessing). A bare name that is also a file in the current folder is the zoo
    model, with a note saying how to run the file instead.
    """
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or looks_like_path(text):
        return _locate_file(Path(text).expanduser())
    try:
        resolution = index_cache.resolve(text, opset)
    except UnknownModelError:
        if os.path.isfile(text):  # not a zoo name, but a file here: run the file, and say so
            found = _locate_file(Path(text))
            return Located(found.entry, found.path, found.note or f"{text!r} is no zoo model name: running ./{text}")
        raise
    note = resolution.note
    if os.path.isfile(text):
        shadow = f"{text!r} is a zoo model name; the file ./{text} here was not used (pass ./{text} to run it)"
        note = f"{note}; {shadow}" if note else shadow
    return Located(resolution.entry, None, note)


def _locate_file(path: Path) -> Located:
    if not os.path.isfile(path):  # not Path.is_file(): it raises for a name too long
        raise InputError(unusable("model file", path), expected=["a path to an .onnx file, or a zoo model name"])
    from zoo.store.fingerprint import sha256_of

    try:
        sha = sha256_of(path)
    except OSError as exc:
        raise InputError(f"cannot read model file {path}: {exc.strerror or exc}",
                         expected=["a readable .onnx file"]) from None
    entry = index_cache.by_sha256(sha)
    note = None if entry is None else f"{path} is zoo model {entry.id} (sha256 {sha[:12]}…): using its manifest"
    return Located(entry, path, note)


class Model:
    """A loaded model: session, runner, labels. `predict()` runs prepare -> run -> decode."""

    def __init__(self, *, path: Path, entry: ModelEntry | None, session: InferenceSession,
                 report: runtime.ProviderReport, recipe: ImageRecipe | Step | None,
                 labels: tuple[str, ...] | None, note: str | None = None) -> None:
        self.path, self.entry, self.session, self.report = path, entry, session, report
        self.recipe, self.labels, self.note = recipe, labels, note
        # Fetched once: ORT builds new NodeArg objects on every get_inputs()/get_outputs() call.
        self.input_metas: tuple[NodeArg, ...] = tuple(session.get_inputs())
        self.output_metas: tuple[NodeArg, ...] = tuple(session.get_outputs())
        self._output_names = [o.name for o in self.output_metas]
        self.runner: Runner = select_runner(recipe=recipe, inputs=self.input_metas, entry=entry, labels=labels,
                                            name=self.name, path=path)

    def __repr__(self) -> str:
        return f"<zoo.Model {self.name} on {self.report.primary}>"

    @property
    def name(self) -> str:
        return self.entry.id if self.entry else self.path.name

    @property
    def info(self) -> ModelEntry | None:
        return self.entry

    @property
    def providers(self) -> list[str]:
        """What onnxruntime actually uses, best first."""
        return list(self.report.used)

    @property
    def inputs(self) -> list[NodeArg]:
        return list(self.input_metas)

    @property
    def outputs(self) -> list[NodeArg]:
        return list(self.output_metas)

    @property
    def task(self) -> str:
        return self.runner.task

    @property
    def max_batch(self) -> int:
        """How many prepared inputs one run may take (1 when the model's batch axis is fixed)."""
        return self.runner.max_batch

    # -- building blocks ----------------------------------------------------------------

    def ensure_runnable(self) -> None:
        """Raise the reason when zoo cannot feed this model by itself (no recipe, a text model)."""
        if isinstance(self.runner, NoRunner):
            raise self.runner.error

    def run(self, feeds: dict[str, Any], *, check: bool = True) -> dict[str, Any]:
        """Run raw feeds, checked against the graph inputs unless `check` is False (the caller checked them);
        outputs by name."""
        if check:
            runtime.check_feeds(self.session, feeds, metas=self.input_metas)
        return dict(zip(self._output_names, self.session.run(self._output_names, feeds)))

    def prepare(self, item: object) -> Any:
        """Decode and preprocess one input (image path, PIL image, array, table); thread-safe."""
        return self.runner.prepare(item)

    def batch_key(self, prepared: Any) -> tuple[object, ...]:
        """Prepared inputs with equal keys may share one run."""
        return self.runner.batch_key(prepared)

    def feeds(self, prepared: Sequence[Any]) -> dict[str, np.ndarray]:
        """The session feeds for a group of prepared inputs (equal batch keys, at most max_batch)."""
        return self.runner.feeds(prepared)

    def preprocess(self, item: object) -> dict[str, np.ndarray]:
        """Feeds for one input (batch axis added where the model has one)."""
        return self.feeds([self.prepare(item)])

    def run_prepared(self, group: Sequence[tuple[str, Any]], *, topk: int | None = None,
                     score_threshold: float | None = None) -> list[Prediction]:
        """Run one group of (input name, prepared) pairs; Predictions in order."""
        from zoo.prediction import Prediction  # see the note on the imports

        prepared = [p for _, p in group]
        outputs = self.run(self.feeds(prepared))
        decoded = self.runner.decode(outputs, prepared, [n for n, _ in group],
                                     DecodeOptions(topk=topk, score_threshold=score_threshold))
        provider = self.report.primary
        return [Prediction(name, self.name, provider, _task_of(self.runner.task, answer), answer)
                for answers in decoded for name, answer in answers]

    # -- predicting -----------------------------------------------------------------------

    def predict(self, x: object, *, topk: int | None = None,
                score_threshold: float | None = None) -> Prediction | list[Prediction]:
        """Answer for one input (image path, PIL image, array) or a list of them.

        A list gives a list. A tabular model given a 2-D table (array or list of rows)
        gives one Prediction per row.
        """
        self.ensure_runnable()
        items, many = self._items(x)
        out: list[Prediction] = []
        for group in self._groups([(describe(item), self.prepare(item)) for item in items]):
            out.extend(self.run_prepared(group, topk=topk, score_threshold=score_threshold))
        return out if many or len(out) != 1 else out[0]

    def _items(self, x: object) -> tuple[list[object], bool]:
        if self.runner.kind == "tabular" and _is_table(x):
            return [x], True
        if isinstance(x, list | tuple):
            return list(x), True
        return [x], False

    def _groups(self, prepared: Iterable[tuple[str, Any]]) -> Iterator[list[tuple[str, Any]]]:
        """Consecutive prepared inputs with equal batch keys, up to max_batch each."""
        limit, key = self.max_batch, None
        group: list[tuple[str, Any]] = []
        for name, item in prepared:
            item_key = self.batch_key(item)
            if group and (len(group) >= limit or item_key != key):
                yield group
                group = []
            group.append((name, item))
            key = item_key
        if group:
            yield group

    def predict_iter(self, items: Iterable[object], *, batch_size: int = 16, workers: int | None = None,
                     topk: int | None = None, score_threshold: float | None = None) -> Iterator[Result]:
        """Predictions (or Failure rows) for many inputs, in input order, streaming.

        Inputs go in chunks (one run's worth; a few for a model with a fixed batch of one) to
        `workers` streams, threads that each prepare their chunk and run it: decoding overlaps
        runs, and on a session with one intra-op thread (as `zoo predict DIR` loads it) runs
        overlap each other too (zoo.tuning says why and picks the defaults). For throughput,
        load with `threads=tuning.folder_threads(tuning.usable_cores())` (1 on up to 8 cores):
        `zoo.load()`'s default session spins an intra-op thread per core, best for one image's
        latency but burning the cycles the other streams need (BENCHMARKS.md). At most
        tuning.chunks_ahead(workers) chunks are in flight, so memory stays flat on any number
        of inputs. An input that cannot be read is a Failure row.
        """
        from concurrent.futures import ThreadPoolExecutor  # only streaming needs these: zoo.load stays lighter

        from zoo import tuning
        from zoo.prediction import Failure  # see the note on the imports

        self.ensure_runnable()
        for arg, value in (("batch_size", batch_size), ("workers", workers)):
            if value is not None and not is_count(value):
                raise InputError(f"{arg}={value!r}", expected=["an int >= 1"])
        DecodeOptions(topk=topk, score_threshold=score_threshold)  # refused here, not at the first run
        limit = max(1, min(batch_size, self.max_batch))
        threads = self.session.get_session_options().intra_op_num_threads
        workers = workers or tuning.stream_workers(tuning.usable_cores(), threads)
        size = tuning.chunk_size(limit, batched=self.max_batch > 1)  # groups then never exceed `limit`

        def run(ready: list[tuple[str, Any]]) -> list[Result]:
            return [row for group in self._groups(ready) for row in self._run_or_fail(group, topk, score_threshold)]

        def stream(chunk: list[object]) -> list[Result]:
            rows: list[Result] = []
            ready: list[tuple[str, Any]] = []
            for item in chunk:
                name = describe(item)
                try:
                    ready.append((name, self.prepare(item)))
                except ZooError as exc:  # input order: the inputs before it run first, then its row
                    rows += run(ready) + [Failure(name, self.name, exc.what, exc.hint)]
                    ready = []
            return rows + run(ready)

        source = iter(items)
        pending: deque[Future[list[Result]]] = deque()
        with ThreadPoolExecutor(workers, thread_name_prefix="zoo-stream") as pool:
            try:
                while True:
                    while len(pending) < tuning.chunks_ahead(workers) and (chunk := list(islice(source, size))):
                        pending.append(pool.submit(stream, chunk))
                    if not pending:
                        return
                    yield from pending.popleft().result()
            finally:  # a consumer that stops early (or an error) leaves no queued chunk to run
                for future in pending:
                    future.cancel()

    def _run_or_fail(self, group: list[tuple[str, Any]], topk: int | None,
                     score_threshold: float | None) -> Iterator[Result]:
        from zoo.prediction import Failure  # see the note on the imports

        try:
            yield from self.run_prepared(group, topk=topk, score_threshold=score_threshold)
        except ZooError as exc:  # e.g. a decoder that refuses these outputs: every row of the group says why
            for name, _ in group:
                yield Failure(name, self.name, exc.what, exc.hint)

    # -- checking -------------------------------------------------------------------------

    def check(self, test_data: str | Path | None = None) -> CheckReport:
        """Run the zoo's test sets (pulled with the model's test-data archive, or a folder) -> CheckReport."""
        from zoo import check

        folder = self.test_data_folder(test_data)
        sets = check.find_sets(folder)
        if not sets:
            raise check.no_sets_error(folder)
        variant = self.entry.variant if self.entry else None
        scales = check.output_scales(self.path) if variant in ("int8", "qdq") else None
        return check.run_sets(self.session, sets, model=self.name, provider=self.report.primary, variant=variant,
                              scales=scales)

    def test_data_folder(self, test_data: str | Path | None = None) -> Path:
        """The folder of test sets: `test_data` when given, else the model's archive (pulled and extracted)."""
        if test_data is not None:
            if not str(test_data):
                raise InputError("the test-data folder is an empty string", expected=["a folder with test_data_set_*/"])
            return Path(test_data)
        if self.entry is None or self.entry.test_data is None:
            raise ZooError(f"{self.name} has no test-data archive in the index",
                           hint="pass a folder with test_data_set_*/ (zoo check NAME --test-data DIR)")
        from zoo.store.pull import ensure_test_data  # see the note on the imports

        return ensure_test_data(self.entry)  # pulled, or restored when a crash left it half there


def describe(item: object) -> str:
    """The name an input's row carries: its path, or a short description of an in-memory input."""
    from zoo.pipeline.images import describe as describe_image

    if isinstance(item, str | Path):
        return os.fsdecode(item) if isinstance(item, Path) else item
    return describe_image(item)


def _is_table(x: object) -> bool:
    ndim = getattr(x, "ndim", None)
    if ndim is not None:
        return bool(ndim == 2)
    return isinstance(x, list) and bool(x) and all(isinstance(r, list | tuple) for r in x)


def _task_of(task: str, answer: object) -> str:
    from zoo.pipeline.answers import RawOutputs

    return "tensor" if task == "tabular" and isinstance(answer, RawOutputs) else task


def load(name_or_path: str | Path, *, opset: int | None = None, providers: str | Sequence[str] | None = None,
         recipe: str | ImageRecipe | Step | None = None, labels: str | Sequence[str] | None = None,
         threads: int | None = None, strict_provider: bool = False, optimization: str | None = None,
         progress: bool | None = None, spinning: bool | None = None, exact_int8: bool = True) -> Model:
    """Load a zoo model by name (pulled if not cached) or a local .onnx file, ready to predict.

    `optimization` defaults to "all", except for QDQ models: their graphs define
    fake-quantized float numerics, and ORT's extended fusions swap in integer kernels
    that round differently (shufflenet-v2-12-qdq then calls a banana a hotdog), so
    they get "basic" unless asked otherwise.

    `exact_int8=False` lets x86 CPUs without VNNI use onnxruntime's faster u8s8 kernels, whose
    saturating 16-bit sums move int8 models' answers (runtime.EXACT_INT8 says more).
    """
    _check_load_args(name_or_path, opset=opset, providers=providers, recipe=recipe, labels=labels, threads=threads)
    located = locate(name_or_path, opset)
    entry = located.entry
    path = located.path if located.path is not None else _model_file(entry, progress)
    if optimization is None:
        optimization = "basic" if entry is not None and entry.variant == "qdq" else "all"
    chosen = runtime.parse_providers(providers)
    spec = runtime.SessionSpec(providers=None if chosen is None else tuple(chosen), threads=threads,
                               optimization=optimization, strict=strict_provider, spinning=spinning,
                               exact_int8=exact_int8)
    key = entry.file.sha256 if entry is not None and located.path is None else _content_key(path)
    session, report = runtime.create_session(path, spec, cache_dir=cache.home() / "optimized", cache_key=key)
    final_recipe = _recipe_for(recipe, entry, session)
    model = Model(path=path, entry=entry, session=session, report=report, recipe=final_recipe,
                  labels=_labels_for(labels, entry), note=located.note)
    if labels is not None:
        mismatch = _labels_mismatch(model)
        if mismatch:
            model.note = f"{model.note}; {mismatch}" if model.note else mismatch
    return model


def _check_load_args(name_or_path: object, *, opset: object, providers: object, recipe: object, labels: object,
                     threads: object) -> None:
    """Refuse arguments of the wrong kind by name, before anything loads (a typo is not a traceback)."""
    wrong = InputError.wrong_kind
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise wrong("name_or_path", name_or_path, "a zoo model name or the path of an .onnx file")
    for arg, value in (("opset", opset), ("threads", threads)):
        if value is not None and not is_int(value):  # their ranges are checked where they are used
            raise wrong(arg, value, "an int, or None")
    for arg, value, want in (("providers", providers, "a provider name, a comma-separated string or a list of names"),
                             ("labels", labels, "a label-set name, a file path, or a list of strings")):
        if value is not None and not isinstance(value, str) and not (
                isinstance(value, Sequence) and all(isinstance(x, str) for x in value)):
            raise wrong(arg, value, want)
    if recipe is not None and not isinstance(recipe, (str, ImageRecipe)) and not callable(recipe):
        raise wrong("recipe", recipe, "a recipe name, an ImageRecipe, or a function from a PIL image to feeds")


def _labels_mismatch(model: Model) -> str | None:
    """A note when labels the caller chose do not number the classifier's classes (a wrong file, most likely)."""
    if model.labels is None or model.task != "classification" or len(model.output_metas) != 1:
        return None
    shape = model.output_metas[0].shape
    classes = shape[-1] if shape else None
    if not isinstance(classes, int) or classes <= 1 or classes == len(model.labels):
        return None
    given = len(model.labels)
    effect = f"classes from {given} on show their index" if classes > given else "the extra labels are never used"
    return f"the labels given number {given}, but the model scores {classes} classes: {effect}"


def _model_file(entry: ModelEntry | None, progress: bool | None) -> Path:
    assert entry is not None  # locate() gives an entry whenever it gives no path
    cached = cache.cached_path(entry)
    if cached is not None:
        return cached
    from zoo.store.pull import pull_entry  # the download stack, only for a model not cached yet

    return pull_entry(entry, progress=progress)[0].path


def _content_key(path: Path) -> str:
    from zoo.store.fingerprint import sha256_of

    return sha256_of(path)


def _recipe_for(recipe: str | ImageRecipe | Step | None, entry: ModelEntry | None,
                session: InferenceSession) -> ImageRecipe | Step | None:
    if recipe is None:
        return entry.preprocess if entry is not None and isinstance(entry.preprocess, ImageRecipe) else None
    # Only a recipe named or given by the caller needs the preprocessing module (and Pillow) at load time.
    from zoo.pipeline import preprocess

    if isinstance(recipe, str):
        recipe = preprocess.get(recipe)
    if isinstance(recipe, ImageRecipe):
        return preprocess.with_input(recipe, _fixed_hw(session, recipe))
    return recipe


def _labels_for(labels: str | Sequence[str] | None, entry: ModelEntry | None) -> tuple[str, ...] | None:
    from zoo.index import labels as label_sets

    if isinstance(labels, str):
        return label_sets.load(labels)
    if labels is None and entry is not None and entry.labels:
        return label_sets.load(entry.labels)
    return None if labels is None else tuple(labels)


def _fixed_hw(session: InferenceSession, recipe: ImageRecipe) -> tuple[int, int] | None:
    shape = session.get_inputs()[0].shape
    if len(shape) != 4:
        return None
    h, w = (shape[1], shape[2]) if recipe.layout == "NHWC" else (shape[2], shape[3])
    return (h, w) if isinstance(h, int) and isinstance(w, int) else None

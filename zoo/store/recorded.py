"""Recorded test data of added models: what `zoo add --test-inputs` keeps, in the zoo's own layout.

The model is run one layer up (zoo.cli.add, where zoo.model is reachable); this module gets its
feeds and outputs, and stores them as built-in models have theirs: TOP/test_data_set_N/input_K.pb
and output_K.pb (ONNX TensorProtos) in a .tar.gz, imported into the verified cache and named by
the entry's `test_data` (sha256, size, path). `zoo check ID`, `zoo pull ID --with-test-data` and
`zoo mirror export DIR ID --with-test-data` then treat it like any zoo test-data archive.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.errors import InputError, ZooError
from zoo.index import user_manifest
from zoo.index.catalog import read_manifest_file
from zoo.index.manifest import ModelEntry
from zoo.index.manifest_reader import to_plain
from zoo.store import cache

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True, slots=True)
class RecordedSet:
    """One run of an added model: feeds and outputs in graph order, as test_data_set_N holds them."""

    inputs: tuple[tuple[str, np.ndarray], ...]
    outputs: tuple[tuple[str, np.ndarray], ...]


@dataclass(frozen=True, slots=True)
class TestDataResult:
    """The test-data archive recorded for an added model, and the outputs it could not hold."""

    entry: ModelEntry  # with its test_data
    sets: int
    recorded: tuple[str, ...]  # the outputs each set holds, in graph order
    skipped: tuple[str, ...]  # trailing outputs that are no numeric tensor (ZipMap's list of dicts)

    def to_dict(self) -> dict[str, Any]:
        file = self.entry.test_data
        return {"sets": self.sets, "outputs": list(self.recorded), "skipped_outputs": list(self.skipped),
                "test_data": None if file is None else to_plain(file)}


def storable_outputs(outputs: Sequence[tuple[str, object]]) -> tuple[tuple[tuple[str, np.ndarray], ...],
                                                                      tuple[str, ...]]:
    """The outputs a test set can hold and `zoo check` can compare, and the names of those left out.

    A TensorProto holds tensors only, so ZipMap's list of dicts (seq(map(...))) cannot be stored;
    a string tensor could be, but zoo check compares values within a tolerance, which strings
    have not. zoo check pairs expected outputs with the graph's by position, so only trailing
    outputs may be left out: one before a kept output is an InputError, as is keeping none.
    """
    import numpy as np

    kept: list[tuple[str, np.ndarray]] = []
    skipped: list[str] = []
    for name, value in outputs:
        numeric = isinstance(value, np.ndarray) and value.dtype.kind in "biuf"
        if numeric and skipped:
            raise InputError(f"cannot record a test set: output {skipped[0]!r} is {_kind(outputs, skipped[0])}, "
                             f"which a test set cannot hold, and it comes before output {name!r} (zoo check pairs "
                             "outputs by position)", expected=_UNSTORABLE_HINTS)
        if numeric:
            kept.append((name, value))  # type: ignore[arg-type]  # narrowed by the isinstance above
        else:
            skipped.append(name)
    if not kept:
        raise InputError(f"cannot record a test set: no output is a numeric tensor ({', '.join(skipped)})",
                         expected=_UNSTORABLE_HINTS)
    return tuple(kept), tuple(skipped)


_UNSTORABLE_HINTS = ["convert without ZipMap: skl2onnx.to_onnx(model, X, options={'zipmap': False})",
                     "train on integer class labels (labels then go in --labels), not strings",
                     "or leave out --test-inputs and check with `zoo check ID --test-data DIR`"]


def _kind(outputs: Sequence[tuple[str, object]], name: str) -> str:
    value = dict(outputs)[name]
    if isinstance(value, list | tuple):
        return "a sequence (e.g. ZipMap's list of dicts)"
    return f"a {getattr(getattr(value, 'dtype', None), 'name', type(value).__name__)} tensor"


def record_test_data(model_id: str, sets: Sequence[RecordedSet], *, manifest: Path | None = None,
                     skipped: Sequence[str] = ()) -> TestDataResult:
    """Pack `sets` as the test-data archive of the added model `model_id`, import it, name it in its entry.

    Order: archive written and imported into the verified cache, the old extracted folder
    moved out of the way, the manifest entry updated (locked, atomic), then extracted. A failure
    leaves the old entry; a folder missing after a crash is extracted again by `zoo check`.
    """
    import tempfile

    from zoo.store import download, pull
    from zoo.store.hashing import sha256_file

    manifest = Path(manifest) if manifest is not None else user_manifest.default_path()
    if not sets:
        raise InputError("no test inputs to record", expected=["one or more images, .csv or .npy files"])
    own = next((m for m in user_manifest.read(manifest)["models"] if str(m.get("id", "")).lower() == model_id.lower()),
               None)
    if own is None:
        raise ZooError(f"{model_id!r} is not in {manifest}", hint=f"add it first: zoo add FILE.onnx --id {model_id}")
    exact = str(own["id"])
    with tempfile.TemporaryDirectory(prefix="zoo-test-data-") as tmp:
        packed = write_archive(Path(tmp) / f"{exact}.tar.gz", exact, sets)
        sha256, size = sha256_file(packed)
        test_data = {"path": f"user/{exact}/{exact}.tar.gz", "sha256": sha256, "size": size}
        doc = {**own, "test_data": test_data}
        entry = ModelEntry.from_dict(doc, source=str(manifest), family=user_manifest.FAMILY, where="models[-1]")
        assert entry.test_data is not None  # just set
        download.import_file(entry, entry.test_data, packed)
    old = pull.test_data_dir(entry)
    if os.path.lexists(old):  # extracted from an earlier archive: it would pass as whole, so it must go first
        cache.discard(cache.home(), old)
    user_manifest.update(manifest, lambda d: _with_test_data(d, exact, test_data), _validate)
    pull.ensure_test_data(entry)  # a cache hit: extracts the archive just imported
    return TestDataResult(entry, len(sets), tuple(n for n, _ in sets[0].outputs), tuple(skipped))


def _validate(tmp: Path) -> None:
    """The new manifest parses with the catalog's own reader before it replaces the old one."""
    read_manifest_file(tmp)


def _with_test_data(doc: user_manifest.Document, model_id: str, test_data: dict[str, Any]) -> user_manifest.Document:
    if not any(m.get("id") == model_id for m in doc["models"]):  # removed by another process meanwhile
        raise ZooError(f"{model_id!r} left the user manifest while its test data was recorded",
                       hint=f"add it again: zoo add FILE.onnx --id {model_id} --test-inputs ...")
    return {**doc, "models": [{**m, "test_data": test_data} if m.get("id") == model_id else m for m in doc["models"]]}


def write_archive(path: Path, top: str, sets: Sequence[RecordedSet]) -> Path:
    """TOP/test_data_set_N/input_K.pb and output_K.pb (ONNX TensorProtos) as a .tar.gz at `path`.

    Fixed mtimes and owners: the same runs give the same bytes, so the same sha256.
    """
    import gzip
    import io
    import tarfile

    import numpy as np
    from onnx import numpy_helper

    with open(path, "xb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as packed, \
            tarfile.open(fileobj=packed, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for n, recorded in enumerate(sets):
            for kind, tensors in (("input", recorded.inputs), ("output", recorded.outputs)):
                for k, (name, value) in enumerate(tensors):
                    data = numpy_helper.from_array(np.asarray(value), name).SerializeToString()
                    member = tarfile.TarInfo(f"{top}/test_data_set_{n}/{kind}_{k}.pb")
                    member.size, member.mode = len(data), 0o644
                    tar.addfile(member, io.BytesIO(data))
    return path

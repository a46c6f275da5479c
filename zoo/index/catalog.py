"""The manifest index: load built-in and user manifests, resolve names.

Built-in manifests ship inside the wheel as `zoo/_manifests` (from the repo's
top-level `manifests/`); extra manifests come from `ZOO_MANIFESTS`, read at
call time. Resolution turns a user's name into exactly one ModelEntry.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from zoo.errors import ManifestError, OpsetError, UnknownModelError
from zoo.index.manifest import ModelEntry
from zoo.index.manifest_reader import parse_json

SCHEMA_VERSION = 1
MAX_MANIFEST_SIZE = 16 * 1024 * 1024  # the largest built-in family (resnet.json) is 51 kB
_PACKAGE_DIR = Path(__file__).resolve().parent.parent  # zoo/


def builtin_manifest_dir() -> Path:
    """Where the built-in manifests are: inside the wheel, or the source checkout."""
    packaged = _PACKAGE_DIR / "_manifests"
    return packaged if packaged.is_dir() else _PACKAGE_DIR.parent / "manifests"


def normalize(name: str) -> str:
    """Case- and space-insensitive key, as onnx.hub matched names."""
    return "".join(name.split()).lower()


@dataclass(frozen=True, slots=True)
class Resolution:
    """The entry a name resolved to, and how (shown to the user when not exact)."""

    entry: ModelEntry
    name: str
    how: str  # "id", "alias" or "hub_name"
    candidates: tuple[str, ...]

    @property
    def note(self) -> str | None:
        """A one-line explanation when the name was not an exact id."""
        if self.how == "id":
            return None
        others = f" (highest opset of {', '.join(self.candidates)})" if len(self.candidates) > 1 else ""
        return f"{self.name!r} resolved to {self.entry.id} by {self.how}{others}"


class Index:
    """All known models, keyed for resolution."""

    def __init__(self, entries: Iterable[ModelEntry]) -> None:
        self.entries: tuple[ModelEntry, ...] = tuple(entries)
        self.by_id = {e.id.lower(): e for e in self.entries}
        self._groups: dict[str, dict[str, list[ModelEntry]]] = {"alias": {}, "hub_name": {}}
        for e in self.entries:
            for alias in e.aliases:
                self._groups["alias"].setdefault(normalize(alias), []).append(e)
            self._groups["hub_name"].setdefault(normalize(e.hub_name), []).append(e)

    def __len__(self) -> int:
        return len(self.entries)

    def resolve(self, name: str, opset: int | None = None) -> Resolution:
        """Find one model: exact id, then alias, then hub name; highest opset wins."""
        entry = self.by_id.get(name.strip().lower())
        if entry is not None:
            if opset is not None and entry.opset != opset:
                raise OpsetError(name, opset, self._siblings(entry))
            return Resolution(entry, name, "id", (entry.id,))
        key = normalize(name)
        for how in ("alias", "hub_name"):
            group = self._groups[how].get(key)
            if group:
                return self._pick(name, how, group, opset)
        raise UnknownModelError(name, self.suggest(name))

    def _siblings(self, entry: ModelEntry) -> list[tuple[str, int]]:
        same = {e.id: e for a in entry.aliases for e in self._groups["alias"].get(normalize(a), [])}
        same.setdefault(entry.id, entry)
        return sorted(((e.id, e.opset) for e in same.values()), key=lambda p: (p[1], p[0]))

    def _pick(self, name: str, how: str, group: list[ModelEntry], opset: int | None) -> Resolution:
        chosen = [e for e in group if opset is None or e.opset == opset]
        if not chosen:
            raise OpsetError(name, opset or 0, sorted(((e.id, e.opset) for e in group), key=lambda p: p[1]))
        # Highest opset; at equal opset prefer fp32, then the shortest id: deterministic.
        best = max(chosen, key=lambda e: (e.opset, e.variant == "fp32", -len(e.id), e.id))
        ordered = tuple(e.id for e in sorted(group, key=lambda e: (e.opset, e.id)))
        return Resolution(best, name, how, ordered)

    def suggest(self, name: str, n: int = 5) -> list[str]:
        """Up to n known names close to `name`."""
        import difflib  # only an unknown name needs suggestions: loading a model stays lighter

        key = normalize(name)
        names: dict[str, str] = {}
        for e in self.entries:
            for label in (e.id, *e.aliases):
                names.setdefault(normalize(label), label)
            names.setdefault(normalize(e.hub_name), e.hub_name)
        close = difflib.get_close_matches(key, list(names), n=n, cutoff=0.6)
        if not close:
            close = [k for k in names if key and (key in k or k in key)][:n]
        return [names[k] for k in close]

    def filter(self, *, task: str | None = None, tag: str | None = None) -> list[ModelEntry]:
        """Entries with this task and tag (case-insensitive), in index order."""
        out = list(self.entries)
        if task:
            out = [e for e in out if e.task.lower() == task.lower()]
        if tag:
            out = [e for e in out if tag.lower() in (t.lower() for t in e.tags)]
        return out

    def search(self, text: str) -> list[ModelEntry]:
        """Entries whose id, aliases, hub name, tags, family or task contain `text`."""
        key = normalize(text)
        return [
            e
            for e in self.entries
            if any(key in normalize(s) for s in (e.id, e.hub_name, e.family, e.task, *e.aliases, *e.tags))
        ]


def read_manifest_file(path: Path) -> list[ModelEntry]:
    """Parse one manifest file (a family: schema_version, family, models)."""
    source = str(path)
    data = parse_json(_read_bounded(path), source)
    if not isinstance(data, dict):
        raise ManifestError(source, None, "", "top level must be an object with 'family' and 'models'")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise ManifestError(source, None, "schema_version",
                            f"must be {SCHEMA_VERSION}, got {data.get('schema_version')!r}")
    family = data.get("family")
    if not isinstance(family, str) or not family:
        raise ManifestError(source, None, "family", "must be a non-empty string")
    models = data.get("models")
    if not isinstance(models, list):
        raise ManifestError(source, None, "models", "must be a list of model objects")
    return [
        ModelEntry.from_dict(m, source=source, family=family, where=f"models[{i}]") for i, m in enumerate(models)
    ]


def _read_bounded(path: Path) -> bytes:
    """The bytes of a regular file of at most MAX_MANIFEST_SIZE: /dev/zero or a FIFO in ZOO_MANIFESTS
    must not make zoo read forever or block (stat first, then read one byte past the limit)."""
    source = str(path)
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            raise ManifestError(source, None, "", "not a regular file (a device, FIFO or socket is never read)")
        with open(path, "rb") as handle:
            raw = handle.read(MAX_MANIFEST_SIZE + 1)
    except OSError as exc:
        raise ManifestError(source, None, "", f"cannot read: {exc.strerror or exc}") from None
    if len(raw) > MAX_MANIFEST_SIZE:
        raise ManifestError(source, None, "", f"larger than {MAX_MANIFEST_SIZE} bytes; split it into several files")
    return raw


def _manifest_files(root: Path) -> list[Path]:
    if root.is_dir():
        return sorted(p for p in root.rglob("*.json") if p.is_file())
    return [root]


def _check_unique(entries: list[ModelEntry], new: list[ModelEntry], *, builtin_ids: set[str]) -> None:
    seen = {e.id.lower(): e for e in entries}
    for e in new:
        other = seen.get(e.id.lower())
        if other is not None:
            what = "a built-in model" if e.id.lower() in builtin_ids else f"a model from {other.manifest}"
            raise ManifestError(
                e.manifest, e.id, "id", f"collides with {what} of the same id; choose another id"
            )
        seen[e.id.lower()] = e


def _builtin_names(entries: Iterable[ModelEntry]) -> dict[str, str]:
    """Every name a built-in model answers to (normalized), and what it is, for error messages."""
    names: dict[str, str] = {}
    for e in entries:
        names.setdefault(normalize(e.id), f"the id of built-in model {e.id}")
        for alias in e.aliases:
            names.setdefault(normalize(alias), f"an alias of built-in model {e.id}")
        names.setdefault(normalize(e.hub_name), f"the hub name of built-in model {e.id}")
    return names


def _check_not_shadowing(new: list[ModelEntry], builtin: dict[str, str]) -> None:
    """A user model may not answer to a built-in name: `mnist` at opset 999 would take `zoo pull mnist` over.

    An error rather than a silently ignored alias: the user learns at once that the name will
    never reach their model, and built-in resolution stays exactly what it is without the file.
    """
    for e in new:
        names = [("id", e.id), *((f"aliases[{i}]", a) for i, a in enumerate(e.aliases))]
        if e.hub_name != e.id:
            names.append(("hub_name", e.hub_name))
        for field, name in names:
            taken = builtin.get(normalize(name))
            if taken is not None:
                raise ManifestError(e.manifest, e.id, field, f"{name!r} is {taken}; built-in names are never "
                                    "overridden, so choose a name of your own")


@lru_cache(maxsize=4)
def _load(user_paths: str, stamp: object = None) -> Index:
    # `stamp` is only a cache key: the user manifest's (inode, mtime, size), so `zoo add` is seen at once.
    entries: list[ModelEntry] = []
    for path in _manifest_files(builtin_manifest_dir()):
        new = read_manifest_file(path)
        _check_unique(entries, new, builtin_ids=set())
        entries.extend(new)
    builtin_ids = {e.id.lower() for e in entries}
    builtin_names = _builtin_names(entries)
    for raw in filter(None, user_paths.split(os.pathsep)):
        root = Path(raw).expanduser()
        if not root.exists():
            raise ManifestError(raw, None, "", "path in ZOO_MANIFESTS does not exist")
        for path in _manifest_files(root):
            new = read_manifest_file(path)
            _check_unique(entries, new, builtin_ids=builtin_ids)
            _check_not_shadowing(new, builtin_names)
            entries.extend(new)
    return Index(entries)


def load_index(*, refresh: bool = False) -> Index:
    """The index for the current ZOO_MANIFESTS value (parsed once per value; `refresh` parses again)."""
    if refresh:
        _load.cache_clear()
    from zoo.index import user_manifest  # ZOO_MANIFESTS, then the user manifest of `zoo add` when it exists

    return _load(*user_manifest.with_default(os.environ.get("ZOO_MANIFESTS", "")))

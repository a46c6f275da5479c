"""The compiled index cache: resolve one name without parsing every manifest.

Commands that touch one model (`info`, `pull`, `load`, `predict`) would otherwise parse
and validate every manifest on every run, a cost that grows with each in-house model
(about 0.1 ms a model: 10,000 user models add a second). The compiled index is an SQLite
file under ZOO_HOME/index/, named by a signature of the manifests it was built from
(paths, sizes, mtimes, ZOO_MANIFESTS, zoo's version): any change gives a new signature,
so the full parse and validation (`load_index()`) runs once per change. A lookup reads
one row per candidate name and parses only the chosen entry's own manifest object.

Anything the fast path cannot answer exactly as `Index.resolve` would (an unknown name,
an opset error) goes to the full index, so errors and suggestions stay the same.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from zoo.index.catalog import Index, Resolution, builtin_manifest_dir, load_index, normalize
from zoo.index.manifest import ModelEntry
from zoo.store import cache
from zoo.version import __version__

if TYPE_CHECKING:
    import sqlite3

FORMAT = 1  # bump when the table layout changes


def manifest_files() -> list[Path]:
    """Every manifest file the index reads, in a stable order."""
    roots = [builtin_manifest_dir(), *(Path(p).expanduser() for p in _user_roots())]
    files: list[Path] = []
    for root in roots:
        if root.is_dir():
            files.extend(sorted(p for p in root.rglob("*.json") if p.is_file()))
        elif root.exists():
            files.append(root)
    return files


def _user_roots() -> list[str]:
    return [p for p in os.environ.get("ZOO_MANIFESTS", "").split(os.pathsep) if p]


def signature(files: list[Path]) -> str:
    """Changes whenever a manifest (or the list of them, or zoo) changes."""
    # blake2b: a change detector, not content verification (that is sha256, of model files only).
    # Taken from CPython's own C module, which hashlib re-exports: `import hashlib` first loads
    # OpenSSL (about 3 ms), and nothing else a cold `zoo.load` of a cached model does needs it.
    try:
        from _blake2 import blake2b
    except ImportError:  # an interpreter without that module
        from hashlib import blake2b

    digest = blake2b(f"{FORMAT}|{__version__}|{os.environ.get('ZOO_MANIFESTS', '')}".encode(), digest_size=16)
    for path in files:
        st = path.stat()
        digest.update(f"|{os.fsdecode(path)}|{st.st_size}|{st.st_mtime_ns}".encode(errors="surrogateescape"))
    return digest.hexdigest()


def _raw_models(files: list[Path]) -> Iterator[tuple[str, str, str]]:
    """(model id, family, source path) -> the model's own JSON object, for every entry."""
    for path in files:
        data = json.loads(path.read_bytes().decode("utf-8-sig"))
        for raw in data["models"]:
            yield str(raw["id"]), str(data["family"]), json.dumps(raw)


def build(db_path: Path, files: list[Path]) -> Index:
    """Parse and validate everything once (load_index), then write the lookup tables atomically."""
    import sqlite3

    index = load_index(refresh=True)  # the files changed since this process last parsed them
    raw = {model_id.lower(): (family, text) for model_id, family, text in _raw_models(files)}
    tmp = db_path.with_name(f".{db_path.name}.{os.getpid()}.tmp")
    db_path.parent.mkdir(parents=True, exist_ok=True)
    tmp.unlink(missing_ok=True)
    con = sqlite3.connect(tmp)
    try:
        con.executescript("CREATE TABLE names (key TEXT, how TEXT, id TEXT, opset INT, fp32 INT);"
                          "CREATE TABLE entries (id TEXT PRIMARY KEY, sha256 TEXT, family TEXT, source TEXT,"
                          " raw TEXT);"
                          "CREATE INDEX names_key ON names (key, how); CREATE INDEX entries_sha ON entries (sha256);")
        con.executemany("INSERT INTO names VALUES (?, ?, ?, ?, ?)", _name_rows(index))
        con.executemany("INSERT INTO entries VALUES (?, ?, ?, ?, ?)",
                        [(e.id, e.file.sha256, e.family, e.manifest, raw[e.id.lower()][1]) for e in index.entries])
        con.commit()
    finally:
        con.close()
    os.replace(tmp, db_path)
    return index


def _name_rows(index: Index) -> Iterator[tuple[str, str, str, int, int]]:
    for e in index.entries:
        fp32 = int(e.variant == "fp32")
        yield e.id.lower(), "id", e.id, e.opset, fp32
        for alias in e.aliases:
            yield normalize(alias), "alias", e.id, e.opset, fp32
        yield normalize(e.hub_name), "hub_name", e.id, e.opset, fp32


def _connect() -> sqlite3.Connection | None:
    """The compiled index for the manifests as they are now; built when missing; None when it cannot be."""
    import sqlite3

    try:
        files = manifest_files()
        sig = signature(files)
        db_path = cache.home() / "index" / f"{sig}.sqlite"
        if not db_path.is_file():
            build(db_path, files)
            if signature(manifest_files()) != sig:  # a manifest changed while it was read: keep nothing
                db_path.unlink(missing_ok=True)
                return None
        return sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    except (OSError, sqlite3.Error, ValueError, KeyError, TypeError):
        # A read-only or odd cache, or a manifest the full index must explain: use the full index.
        return None


def resolve(name: str, opset: int | None = None) -> Resolution:
    """What `load_index().resolve(name, opset)` returns, read from the compiled index when possible."""
    con = _connect()
    if con is None or not _utf8(name):  # a name with undecodable bytes (surrogates) sqlite cannot take: no id has one
        return load_index().resolve(name, opset)
    with contextlib.closing(con):
        found = _fast_resolve(con, name, opset)
    return found if found is not None else load_index().resolve(name, opset)


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def by_sha256(sha256: str) -> ModelEntry | None:
    """The model whose file has this sha256, if the index has one."""
    con = _connect()
    if con is None:
        return next((e for e in load_index().entries if e.file.sha256 == sha256), None)
    with contextlib.closing(con):
        row = con.execute("SELECT id FROM entries WHERE sha256 = ? LIMIT 1", (sha256,)).fetchone()
        return None if row is None else _entry(con, row[0])


def _fast_resolve(con: sqlite3.Connection, name: str, opset: int | None) -> Resolution | None:
    row = con.execute("SELECT id, opset FROM names WHERE key = ? AND how = 'id'", (name.strip().lower(),)).fetchone()
    if row is not None:
        if opset is not None and row[1] != opset:
            return None  # the full index builds the OpsetError with its sibling list
        return Resolution(_entry(con, row[0]), name, "id", (row[0],))
    key = normalize(name)
    for how in ("alias", "hub_name"):
        group = con.execute("SELECT id, opset, fp32 FROM names WHERE key = ? AND how = ?", (key, how)).fetchall()
        if not group:
            continue
        chosen = [g for g in group if opset is None or g[1] == opset]
        if not chosen:
            return None
        # As Index._pick: highest opset; at equal opset fp32, then the shortest id; deterministic.
        best = max(chosen, key=lambda g: (g[1], g[2], -len(g[0]), g[0]))
        ordered = tuple(g[0] for g in sorted(group, key=lambda g: (g[1], g[0])))
        return Resolution(_entry(con, best[0]), name, how, ordered)
    return None


def _entry(con: sqlite3.Connection, model_id: str) -> ModelEntry:
    family, source, raw = con.execute("SELECT family, source, raw FROM entries WHERE id = ?", (model_id,)).fetchone()
    return ModelEntry.from_dict(json.loads(raw), source=source, family=family, where=model_id)

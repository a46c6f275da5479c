"""Hostile test-data archives: refused with a clear error, nothing written outside, no half-extracted folder.

End to end: the archive is a model's test data (its sha256 in a user manifest, so it downloads and
verifies) reached by `zoo pull --with-test-data` or `zoo cache import`. Directly: zoo.store.archive.safe_extract
on cases tests/test_download.py does not cover, each with a previous extraction in place that must survive.
Hostile members carry "ESCAPED" in their name or target, so a trace of one anywhere is easy to find; in
mixed archives they come last, after good members, so a half extraction would show.
"""

from __future__ import annotations

import gzip
import io
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from reliability_helpers import Mirror, Model, assert_cache_clean, assert_clear_error, use_models, zoo

from zoo.errors import DownloadError
from zoo.store.archive import MAX_SIZE, safe_extract

GOOD = [("test_data_set_0", tarfile.DIRTYPE, ""), ("test_data_set_0/input_0.pb", tarfile.REGTYPE, "")]


def member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, linkname, 0o644
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = 1, 3  # /dev/null's numbers; only the header says so
    return info


def tar_gz(members: list[tuple[str, bytes, str]], raw_tail: bytes = b"") -> bytes:
    """A .tar.gz of (name, type, linkname) members (files hold b"data"), then `raw_tail` tar blocks."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, kind, linkname in members:
            info = member(name, kind, linkname)
            info.size = 4 if kind == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(b"data") if kind == tarfile.REGTYPE else None)
    body = buf.getvalue().rstrip(b"\0")  # reopen the end-of-archive blocks to append raw members
    body += b"\0" * (-len(body) % 512) + raw_tail + b"\0" * 1024
    return gzip.compress(body)


def sparse_header(name: str, declared: int) -> bytes:
    """One old-GNU sparse member that declares `declared` bytes and stores none: a bomb in 512 bytes."""
    block = bytearray(tarfile.TarInfo(name).tobuf(format=tarfile.GNU_FORMAT))
    block[156:157] = tarfile.GNUTYPE_SPARSE
    block[483:495] = b"%011o\0" % declared  # the real (uncompressed) size field of the sparse header
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


def assert_nothing_escaped(root: Path) -> None:
    escaped = [p for p in root.rglob("*") if "ESCAPED" in p.name]
    assert escaped == [], f"written outside the destination: {escaped}"


# -- end to end: zoo pull --with-test-data, zoo cache import --------------------------------------

E2E = [  # (hostile member (name, type, linkname) with "{out}" for an absolute folder outside, words)
    pytest.param(("../ESCAPED", tarfile.REGTYPE, ""), "has a '..' component", id="path-traversal"),
    pytest.param(("{out}/ESCAPED", tarfile.REGTYPE, ""), "is an absolute path", id="absolute-path"),
    pytest.param(("ESCAPED-link", tarfile.SYMTYPE, "../../../ESCAPED"), "outside the destination", id="symlink-out"),
    pytest.param(("ESCAPED-link", tarfile.SYMTYPE, "{out}/ESCAPED"), "outside the destination",
                 id="symlink-absolute"),
    pytest.param(("ESCAPED-hard", tarfile.LNKTYPE, "../ESCAPED"), "outside the destination", id="hardlink-out"),
    pytest.param(("ESCAPED-dev", tarfile.CHRTYPE, ""), "is a device or fifo", id="char-device"),
    pytest.param(("ESCAPED-blk", tarfile.BLKTYPE, ""), "is a device or fifo", id="block-device"),
    pytest.param(None, f"above the limit of {MAX_SIZE} bytes", id="bomb-5GiB-declared"),
]


def hostile_model(model_id: str, hostile: tuple[str, bytes, str] | None, out: Path) -> Model:
    if hostile is None:  # the default limit (4 GiB) only, without building gigabytes: a sparse header
        archive = tar_gz(GOOD, raw_tail=sparse_header("ESCAPED-bomb.pb", 5 * 1024**3))
    else:
        name, kind, linkname = hostile
        archive = tar_gz([*GOOD, (name.format(out=out), kind, linkname.format(out=out))])
    return Model(model_id, b"model bytes of " + model_id.encode(), archive)


@pytest.mark.parametrize("how", ["pull", "import"])
@pytest.mark.parametrize(("hostile", "why"), E2E)
def test_hostile_test_data_is_refused_end_to_end(
    how: str, hostile: tuple[str, bytes, str] | None, why: str,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_env: Path,
) -> None:
    out = tmp_path / "outside"
    out.mkdir()
    model = hostile_model("rel-archive-1", hostile, out)
    use_models(monkeypatch, tmp_path / "manifests", model)
    with Mirror(model.files()) as mirror:
        monkeypatch.setenv("ZOO_MIRROR", mirror.url)
        if how == "pull":
            result = zoo("pull", "--quiet", "--with-test-data", model.model_id)
        else:
            local = tmp_path / "download" / "test-data.tar.gz"
            local.parent.mkdir()
            local.write_bytes(model.test_data or b"")
            result = zoo("cache", "import", str(local))
    assert_clear_error(result, 3, "refusing to extract", why, "hint: nothing was extracted")
    assert hostile is None or "ESCAPED" in result.stderr  # the offending member is named (a bomb: its total)
    assert_nothing_escaped(tmp_path)
    assert list(out.iterdir()) == []
    folder = isolated_env / "models" / model.model_id
    archive_view = folder / Path(model.test_data_path).name
    assert not (folder / "test_data").exists()
    assert {p.name for p in folder.iterdir()} <= {Path(model.path).name, archive_view.name}  # no temp dirs
    assert assert_cache_clean(isolated_env) == (2 if how == "pull" else 1)  # the archive verified: a fine blob


def test_good_test_data_extracts_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            isolated_env: Path) -> None:
    """The control: the same harness with a harmless archive succeeds, so the refusals above are real."""
    model = Model("rel-archive-1", b"model bytes", tar_gz(GOOD))
    use_models(monkeypatch, tmp_path / "manifests", model)
    with Mirror(model.files()) as mirror:
        monkeypatch.setenv("ZOO_MIRROR", mirror.url)
        result = zoo("pull", "--quiet", "--with-test-data", model.model_id)
    assert result.exit_code == 0, result.stderr
    extracted = isolated_env / "models" / model.model_id / "test_data" / "test_data_set_0" / "input_0.pb"
    assert extracted.read_bytes() == b"data"
    assert assert_cache_clean(isolated_env) == 2


# -- safe_extract directly: a previous extraction survives every refusal ---------------------------

def pax_renamed(shown: str, real: str) -> bytes:
    """A member whose plain tar name is `shown` but whose PAX 'path' record, which readers obey, is `real`."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        info = member(shown)
        info.size, info.pax_headers = 4, {"path": real}
        tar.addfile(info, io.BytesIO(b"data"))
    return buf.getvalue()


def zero_bomb(members: int, size: int) -> bytes:
    """`members` files of `size` zero bytes each: 8 MiB of zeros compress to about 8 KiB."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for n in range(members):
            info = member(f"zeros-{n}.pb")
            info.size = size
            tar.addfile(info, io.BytesIO(bytes(size)))
    return buf.getvalue()


DIRECT = [  # (archive maker, max_size or None for the default, words)
    pytest.param(lambda: tar_gz([*GOOD, ("..\\ESCAPED", tarfile.REGTYPE, "")]), None, "'..' component",
                 id="backslash-traversal"),
    pytest.param(lambda: tar_gz([*GOOD, ("C:\\ESCAPED", tarfile.REGTYPE, "")]), None, "absolute path",
                 id="windows-drive"),
    pytest.param(lambda: tar_gz([*GOOD, ("ESCAPED-hard", tarfile.LNKTYPE, "/etc/passwd")]), None, "outside",
                 id="hardlink-absolute"),
    pytest.param(lambda: tar_gz([*GOOD, ("sub", tarfile.SYMTYPE, "."), ("sub/ESCAPED-up", tarfile.SYMTYPE, "..")]),
                 None, "outside the destination", id="symlink-chain"),  # each link alone stays inside
    pytest.param(lambda: pax_renamed("innocent.pb", "../ESCAPED"), None, "'..' component", id="pax-path-override"),
    pytest.param(lambda: zero_bomb(3, 8 * 1024**2), 20 * 1024**2, "above the limit",
                 id="zero-bomb-24MiB"),
]


@pytest.mark.parametrize(("make", "max_size", "why"), DIRECT)
def test_safe_extract_refuses_and_keeps_the_previous_extraction(
    make: Callable[[], bytes], max_size: int | None, why: str, tmp_path: Path
) -> None:
    archive = tmp_path / "hostile.tar.gz"
    archive.write_bytes(make())
    assert archive.stat().st_size < 100_000  # small archives, even the one declaring 24 MiB
    dest = tmp_path / "models" / "m" / "test_data"
    dest.mkdir(parents=True)
    (dest / "previous.pb").write_bytes(b"previous")
    with pytest.raises(DownloadError, match=why) as caught:
        safe_extract(archive, dest, **({} if max_size is None else {"max_size": max_size}))
    assert str(archive) in str(caught.value)
    assert [p.name for p in dest.parent.iterdir()] == ["test_data"]  # no temp folder left beside it
    assert [(p.name, p.read_bytes()) for p in dest.iterdir()] == [("previous.pb", b"previous")]
    assert_nothing_escaped(tmp_path)


def test_symlink_chain_is_refused_without_the_data_filter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(tarfile, "data_filter", raising=False)  # what safe_extract sees on those Pythons
    archive = tmp_path / "chain.tar.gz"
    archive.write_bytes(tar_gz([("a", tarfile.SYMTYPE, "."), ("a/up", tarfile.SYMTYPE, ".."),
                                ("up/ESCAPED.txt", tarfile.REGTYPE, "")]))
    dest = tmp_path / "models" / "m" / "test_data"
    try:
        with pytest.raises(DownloadError, match="outside"):
            safe_extract(archive, dest)
    finally:
        assert_nothing_escaped(tmp_path)  # today: tmp_path/models/m/ESCAPED.txt, beside dest

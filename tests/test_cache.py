"""`zoo cache`: scan, verify, import, rm, prune and clear against a real cache in tmp_path.

Cache states are built the way a user builds them: synthetic files listed in a
user manifest (ZOO_MANIFESTS) and added with `zoo cache import`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import sha256_hex as sha256
from conftest import tar_gz
from test_manifest import broken, write_manifest

from zoo.cli.cache import cache
from zoo.store.cache_plan import DeletePlan, PlanItem, plan_prune
from zoo.store.cache_scan import scan

DAY = 86400.0


def model(model_id: str, data: bytes, aliases: list[str], test_data: bytes | None = None) -> dict:
    m = broken("id", model_id)
    m["aliases"] = aliases
    m["file"] = {"path": f"private/{model_id}.onnx", "sha256": sha256(data), "size": len(data)}
    if test_data is not None:
        m["test_data"] = {"path": f"private/{model_id}.tar.gz", "sha256": sha256(test_data), "size": len(test_data)}
    return m


@dataclass(frozen=True)
class Zoo:
    home: Path
    downloads: Path
    data: dict[str, bytes]  # file name in downloads -> bytes

    def file(self, name: str) -> Path:
        return self.downloads / name

    def blob(self, name: str) -> Path:
        return self.home / "blobs" / "sha256" / sha256(self.data[name])

    def view(self, model_id: str, name: str) -> Path:
        return self.home / "models" / model_id / name


@pytest.fixture
def zoo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_env: Path) -> Zoo:
    """Three synthetic models: acme (alias acme), gamma (same bytes as acme), beta (with test data)."""
    data = {
        "acme-net-1.onnx": os.urandom(3000),
        "beta-net-2.onnx": os.urandom(5000),
        "beta-net-2.tar.gz": tar_gz({"test_data_set_0/input_0.pb": os.urandom(64)}),
    }
    data["gamma-1.onnx"] = data["acme-net-1.onnx"]  # one blob serving two ids
    (tmp_path / "manifests").mkdir()
    write_manifest(tmp_path / "manifests", [
        model("acme-net-1", data["acme-net-1.onnx"], ["acme"]),
        model("gamma-1", data["gamma-1.onnx"], ["gamma"]),
        model("beta-net-2", data["beta-net-2.onnx"], ["beta"], test_data=data["beta-net-2.tar.gz"]),
    ])
    monkeypatch.setenv("ZOO_MANIFESTS", str(tmp_path / "manifests"))
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    for name, content in data.items():
        (downloads / name).write_bytes(content)
    return Zoo(isolated_env, downloads, data)


def run(*args: str, code: int = 0, input: str | None = None):
    result = CliRunner().invoke(cache, list(args), catch_exceptions=False, input=input)
    assert result.exit_code == code, (result.stdout, result.stderr)
    return result


def tree(root: Path) -> dict[str, object]:
    """Every path under root with its size and mtime (links as their target), to compare before and after.

    Stat only: reading a blob would refresh its access time, which prune --older-than looks at.
    """
    out: dict[str, object] = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        out[str(path.relative_to(root))] = os.readlink(path) if path.is_symlink() else (st.st_size, st.st_mtime_ns)
    return out


def unpacked_size(zoo: Zoo) -> int:
    """Bytes of beta's unpacked test data: its 64-byte member and the extraction record zoo writes beside it."""
    return 64 + (zoo.home / "models" / "beta-net-2" / "test_data" / ".zoo-extracted.json").stat().st_size


def import_all(zoo: Zoo) -> None:
    run("import", str(zoo.file("acme-net-1.onnx")), str(zoo.file("beta-net-2.onnx")),
        str(zoo.file("beta-net-2.tar.gz")))


# -- import ---------------------------------------------------------------------------------------------


def test_import_by_sha256_links_every_model_that_uses_the_bytes(zoo: Zoo) -> None:
    out = run("import", str(zoo.file("acme-net-1.onnx"))).stdout.split()
    assert out == [str(zoo.view("acme-net-1", "acme-net-1.onnx")), str(zoo.view("gamma-1", "gamma-1.onnx"))]
    assert zoo.blob("acme-net-1.onnx").read_bytes() == zoo.data["acme-net-1.onnx"]
    assert zoo.view("gamma-1", "gamma-1.onnx").read_bytes() == zoo.data["acme-net-1.onnx"]
    assert zoo.file("acme-net-1.onnx").exists()  # imported by copy: the download stays
    zoo.view("gamma-1", "gamma-1.onnx").unlink()
    assert run("import", str(zoo.file("gamma-1.onnx")), "--id", "gamma").stdout.split() == [
        str(zoo.view("gamma-1", "gamma-1.onnx"))]  # already cached: the view comes back


def test_import_with_id_accepts_an_alias(zoo: Zoo) -> None:
    data = json.loads(run("import", str(zoo.file("beta-net-2.onnx")), "--id", "beta", "--json").stdout)
    assert [(i["id"], i["kind"], i["sha256"]) for i in data[0]["imported"]] == [
        ("beta-net-2", "model", sha256(zoo.data["beta-net-2.onnx"]))]
    assert data[0]["bytes"] == 5000 and zoo.view("beta-net-2", "beta-net-2.onnx").is_file()


def test_import_with_wrong_id_is_refused_and_names_the_right_model(zoo: Zoo) -> None:
    result = run("import", str(zoo.file("acme-net-1.onnx")), "--id", "beta", code=3)
    assert f"got sha256 {sha256(zoo.data['acme-net-1.onnx'])} (3000 bytes)" in result.stderr
    assert f"expected model file sha256 {sha256(zoo.data['beta-net-2.onnx'])} (5000 bytes)" in result.stderr
    assert "--id acme-net-1" in result.stderr
    assert scan().entries == ()


def test_import_of_an_unknown_file_is_refused_and_changes_nothing(zoo: Zoo, tmp_path: Path) -> None:
    stranger = tmp_path / "stranger.onnx"
    stranger.write_bytes(b"not in any manifest" * 100)
    run("import", str(zoo.file("beta-net-2.onnx")))
    before = tree(zoo.home)
    result = run("import", str(stranger), code=3)
    assert str(stranger) in result.stderr and sha256(stranger.read_bytes()) in result.stderr
    assert "(1900 bytes)" in result.stderr and "hint:" in result.stderr and "ZOO_MANIFESTS" in result.stderr
    assert stranger.read_bytes() == b"not in any manifest" * 100
    assert tree(zoo.home) == before


def test_import_of_several_files_keeps_going_and_fails_at_the_end(zoo: Zoo, tmp_path: Path) -> None:
    result = run("import", str(tmp_path / "missing.onnx"), str(zoo.file("beta-net-2.onnx")), code=2)
    assert result.stdout.strip() == str(zoo.view("beta-net-2", "beta-net-2.onnx"))
    assert "no such file" in result.stderr


def test_import_of_test_data_extracts_it(zoo: Zoo) -> None:
    run("import", str(zoo.file("beta-net-2.tar.gz")))
    extracted = zoo.home / "models" / "beta-net-2" / "test_data" / "test_data_set_0" / "input_0.pb"
    assert extracted.stat().st_size == 64
    (entry,) = scan().entries
    assert (entry.model_id, entry.kind, entry.extracted_size) == ("beta-net-2", "test-data", unpacked_size(zoo))


# -- ls and dir -----------------------------------------------------------------------------------------


def test_ls_json_maps_blobs_to_models(zoo: Zoo) -> None:
    import_all(zoo)
    data = json.loads(run("ls", "--json").stdout)
    assert data["root"] == str(zoo.home)
    got = {(e["id"], e["kind"]): e for e in data["entries"]}
    assert set(got) == {("acme-net-1", "model"), ("gamma-1", "model"), ("beta-net-2", "model"),
                        ("beta-net-2", "test-data")}
    assert got[("acme-net-1", "model")]["sha256"] == got[("gamma-1", "model")]["sha256"]
    assert got[("gamma-1", "model")]["path"] == str(zoo.view("gamma-1", "gamma-1.onnx"))
    assert got[("beta-net-2", "model")]["bytes"] == got[("beta-net-2", "model")]["expected_bytes"] == 5000
    # Each blob counted once, plus the unpacked test data.
    assert data["bytes"] == 3000 + 5000 + len(zoo.data["beta-net-2.tar.gz"]) + unpacked_size(zoo)
    assert data["partials"] == [] and data["warnings"] == []


def test_ls_table_and_total(zoo: Zoo) -> None:
    run("import", str(zoo.file("beta-net-2.onnx")))
    (zoo.home / "partial" / f"{'c' * 64}.part").write_bytes(b"x" * 10)
    lines = run("ls").stdout.splitlines()
    assert lines[0].split() == ["ID", "KIND", "SIZE", "PATH"]
    assert lines[2].split()[:2] == ["beta-net-2", "model"]
    assert "partial downloads:" in lines and lines[-1] == f"total: 5.0 KB (5010 bytes) in {zoo.home}"


def test_ls_of_an_empty_cache_and_dir(zoo: Zoo) -> None:
    result = run("ls")
    assert "no models cached" in result.stderr and result.stdout.strip().endswith(f"(0 bytes) in {zoo.home}")
    assert run("dir").stdout.strip() == str(zoo.home)


def test_scan_collects_warnings_instead_of_failing(zoo: Zoo) -> None:
    run("import", str(zoo.file("beta-net-2.onnx")))
    (zoo.home / "notes.txt").write_text("mine")
    (zoo.home / "blobs" / "sha256" / "not-a-hash").write_text("?")
    result = run("ls")
    assert "notes.txt" in result.stderr and "not-a-hash" in result.stderr and "beta-net-2" in result.stdout


def test_scan_classifies_partials_orphans_stale_views_and_optimised_files(zoo: Zoo) -> None:
    import_all(zoo)
    home = zoo.home
    (home / "partial" / f"{sha256(zoo.data['acme-net-1.onnx'])}.part").write_bytes(b"12")
    (home / "blobs" / "sha256" / sha256(b"orphan")).write_bytes(b"orphan")
    (home / "optimized").mkdir()
    (home / "optimized" / f"{'d' * 64}.cpu.all.ort1.onnx").write_bytes(b"g")
    (home / "optimized" / "local-0123.cpu.all.ort1.onnx").write_bytes(b"l")
    zoo.blob("beta-net-2.tar.gz").unlink()
    info = scan()
    (partial,) = info.partials
    assert (partial.size, partial.expected_size, partial.model_ids) == (2, 3000, ("acme-net-1", "gamma-1"))
    assert [(o.sha256, o.size, o.views) for o in info.orphans] == [(sha256(b"orphan"), 6, ())]
    stale = {s.path.name: s.reason for s in info.stale_views}
    assert stale == {"beta-net-2.tar.gz": "its blob is not cached",
                     "test_data": "test data unpacked from an archive that is not cached"}
    assert {o.key[:5]: o.orphan for o in info.optimized} == {"ddddd": True, "local": False}
    assert {(e.model_id, e.kind) for e in info.entries} == {("acme-net-1", "model"), ("gamma-1", "model"),
                                                            ("beta-net-2", "model"), (None, "orphan")}
    assert info.warnings == ()


# -- verify ---------------------------------------------------------------------------------------------


def test_verify_good_blobs(zoo: Zoo) -> None:
    import_all(zoo)
    data = json.loads(run("verify", "--json").stdout)
    assert len(data) == 3 and all(r["ok"] and r["removed"] == [] for r in data)
    assert sorted(i for r in data for i in r["ids"]) == ["acme-net-1", "beta-net-2", "beta-net-2", "gamma-1"]


def test_verify_corrupt_blob_reports_and_removes_it_with_its_views(zoo: Zoo) -> None:
    import_all(zoo)
    blob = zoo.blob("acme-net-1.onnx")
    corrupt = bytearray(zoo.data["acme-net-1.onnx"])
    corrupt[100] ^= 0xFF
    with open(blob, "r+b") as f:  # the views are hard links: they change too
        f.seek(100)
        f.write(bytes(corrupt[100:101]))
    result = run("verify", "--json", code=3)
    bad = [r for r in json.loads(result.stdout) if not r["ok"]]
    assert len(bad) == 1 and sorted(bad[0]["ids"]) == ["acme-net-1", "gamma-1"]
    assert bad[0]["expected"] == {"sha256": sha256(zoo.data["acme-net-1.onnx"]), "bytes": 3000}
    assert bad[0]["got"] == {"sha256": sha256(bytes(corrupt)), "bytes": 3000}
    assert set(bad[0]["removed"]) >= {str(blob), str(zoo.view("acme-net-1", "acme-net-1.onnx")),
                                      str(zoo.view("gamma-1", "gamma-1.onnx"))}
    assert not blob.exists() and not zoo.view("gamma-1", "gamma-1.onnx").exists()
    assert "1 of 3 cached files failed verification" in result.stderr and "zoo pull acme-net-1 gamma-1" in result.stderr
    assert zoo.view("beta-net-2", "beta-net-2.onnx").is_file()  # the good ones stay


def test_verify_human_output_shows_expected_and_got(zoo: Zoo) -> None:
    run("import", str(zoo.file("beta-net-2.onnx")))
    zoo.blob("beta-net-2.onnx").write_bytes(b"short")  # same inode: the view shows it too
    out = run("verify", "beta", code=3).stdout
    assert f"expected sha256 {sha256(zoo.data['beta-net-2.onnx'])} (5000 bytes)" in out
    assert f"got      sha256 {sha256(b'short')} (5 bytes)" in out and out.startswith("BAD  beta-net-2")


def test_verify_by_name_checks_only_that_model(zoo: Zoo) -> None:
    run("import", str(zoo.file("beta-net-2.onnx")))
    result = run("verify", "acme", "--json")
    assert json.loads(result.stdout) == [] and "acme-net-1 is not cached" in result.stderr


# -- rm -------------------------------------------------------------------------------------------------


def test_rm_dry_run_deletes_nothing(zoo: Zoo) -> None:
    import_all(zoo)
    before = tree(zoo.home)
    result = run("rm", "beta", "--dry-run")
    assert "dry run" in result.stderr and str(zoo.blob("beta-net-2.onnx")) in result.stdout
    assert tree(zoo.home) == before
    plan = json.loads(run("rm", "beta", "--dry-run", "--json").stdout)
    assert plan["bytes"] == 5000 + len(zoo.data["beta-net-2.tar.gz"]) + unpacked_size(zoo)
    assert tree(zoo.home) == before


def test_rm_by_alias_with_yes(zoo: Zoo) -> None:
    import_all(zoo)
    unpacked = unpacked_size(zoo)
    result = run("rm", "beta", "--yes", "--json")
    assert json.loads(result.stdout)["bytes_freed"] == 5000 + len(zoo.data["beta-net-2.tar.gz"]) + unpacked
    assert not (zoo.home / "models" / "beta-net-2").exists()
    assert not zoo.blob("beta-net-2.onnx").exists() and not zoo.blob("beta-net-2.tar.gz").exists()
    assert {e.model_id for e in scan().entries} == {"acme-net-1", "gamma-1"}


def test_rm_keeps_a_blob_another_model_uses(zoo: Zoo) -> None:
    run("import", str(zoo.file("acme-net-1.onnx")))
    result = run("rm", "acme", "--yes")
    assert "also used by gamma-1" in result.stderr
    assert zoo.blob("acme-net-1.onnx").is_file() and zoo.view("gamma-1", "gamma-1.onnx").is_file()
    assert not (zoo.home / "models" / "acme-net-1").exists()
    run("rm", "gamma", "--yes")
    assert not zoo.blob("acme-net-1.onnx").exists()


def rm_on_a_terminal(answer: str) -> subprocess.CompletedProcess[str]:
    """`zoo cache rm beta` in a subprocess whose stdin is a real pseudo-terminal, answering `answer`."""
    leader, follower = os.openpty()
    try:
        os.write(leader, answer.encode())
        return subprocess.run([sys.executable, "-c", "from zoo.cli.cache import cache; cache()", "rm", "beta"],
                              stdin=follower, capture_output=True, text=True, timeout=60)
    finally:
        os.close(leader)
        os.close(follower)


def test_rm_asks_first_on_a_terminal(zoo: Zoo) -> None:
    run("import", str(zoo.file("beta-net-2.onnx")))
    refused = rm_on_a_terminal("n\n")
    assert refused.returncode == 0 and "delete these 3 paths?" in refused.stderr, refused.stderr
    assert "nothing was deleted" in refused.stderr and "Aborted" not in refused.stderr
    assert zoo.blob("beta-net-2.onnx").is_file()
    ended = rm_on_a_terminal("\x04")  # end of input (Ctrl-D) at the prompt: a no, not a crash
    assert ended.returncode == 0 and "nothing was deleted" in ended.stderr and "Aborted" not in ended.stderr
    assert zoo.blob("beta-net-2.onnx").is_file()
    assert rm_on_a_terminal("y\n").returncode == 0
    assert not zoo.blob("beta-net-2.onnx").exists()


@pytest.mark.parametrize("command", [["rm", "beta"], ["prune"], ["prune", "--older-than", "0s"]])
def test_destructive_commands_without_a_terminal_say_pass_yes(zoo: Zoo, command: list[str]) -> None:
    run("import", str(zoo.file("beta-net-2.onnx")))
    (zoo.home / "partial" / f"{'a' * 64}.part").write_bytes(b"half")  # something for prune to delete
    before = tree(zoo.home)
    result = run(*command, input="y\n", code=2)  # stdin is a pipe, not a terminal: never read
    assert "no terminal" in result.stderr and "pass --yes" in result.stderr and "Aborted" not in result.stderr
    assert tree(zoo.home) == before


def test_rm_unknown_and_uncached(zoo: Zoo) -> None:
    assert "did you mean" in run("rm", "acme-net-11", "--yes", code=2).stderr
    assert "nothing cached for beta-net-2" in run("rm", "beta", "--yes").stderr


# -- prune ----------------------------------------------------------------------------------------------


def test_prune_removes_partials_orphans_stale_views_and_orphan_optimised_files(zoo: Zoo) -> None:
    import_all(zoo)
    home = zoo.home
    partial = home / "partial" / f"{'a' * 64}.part"
    partial.write_bytes(b"half")
    orphan = home / "blobs" / "sha256" / sha256(b"orphan")
    orphan.write_bytes(b"orphan")
    (home / "optimized").mkdir()
    gone = home / "optimized" / f"{'d' * 64}.cpu.all.ort1.20.0.onnx"
    kept = home / "optimized" / f"{sha256(zoo.data['beta-net-2.onnx'])}.cpu.all.ort1.20.0.onnx"
    gone.write_bytes(b"g")
    kept.write_bytes(b"k")
    zoo.blob("acme-net-1.onnx").unlink()  # its views are now stale
    old_temp, new_temp = home / "models" / "beta-net-2" / ".x.1.tmp", home / "partial" / f"{'e' * 64}.1.import"
    old_temp.write_bytes(b"t")
    new_temp.write_bytes(b"t")
    os.utime(old_temp, (time.time() - 2 * 3600,) * 2)

    data = json.loads(run("prune", "--yes", "--json").stdout)
    assert data["bytes_freed"] == 4 + 6 + 1 + 3000 + 1  # the two stale views are hard links of one 3000-byte file
    for path in (partial, orphan, gone, old_temp, zoo.view("acme-net-1", "acme-net-1.onnx"),
                 zoo.view("gamma-1", "gamma-1.onnx")):
        assert not path.exists(), path
    assert kept.exists() and new_temp.exists() and zoo.view("beta-net-2", "beta-net-2.onnx").is_file()
    assert "nothing to prune" in run("prune", "--yes").stderr


def test_prune_older_than_uses_last_access(zoo: Zoo) -> None:
    import_all(zoo)
    old = time.time() - 40 * DAY
    os.utime(zoo.blob("beta-net-2.onnx"), (old, old))
    before = tree(zoo.home)
    assert "nothing to prune" in run("prune", "--yes").stderr
    assert "nothing to prune" in run("prune", "--older-than", "6w", "--yes").stderr
    assert tree(zoo.home) == before
    run("prune", "--older-than", "30d", "--dry-run")
    assert tree(zoo.home) == before
    run("prune", "--older-than", "30d", "--yes")
    assert not zoo.blob("beta-net-2.onnx").exists() and not zoo.view("beta-net-2", "beta-net-2.onnx").exists()
    assert zoo.blob("beta-net-2.tar.gz").exists() and zoo.blob("acme-net-1.onnx").exists()


@pytest.mark.parametrize("age", ["99999999999999999999d", "36501d", "5300w"])
def test_prune_older_than_past_a_century_is_refused(zoo: Zoo, age: str) -> None:
    """timedelta overflows near 2.7 million years: the first was an OverflowError, exit 1."""
    import_all(zoo)
    before = tree(zoo.home)
    result = run("prune", "--older-than", age, "--yes", code=2)
    assert f"'{age}' is longer than 36500 days" in result.stderr and "Traceback" not in result.stderr
    assert tree(zoo.home) == before


def test_prune_counts_a_recently_used_optimised_copy_as_use(zoo: Zoo) -> None:
    run("import", str(zoo.file("beta-net-2.onnx")))
    old = time.time() - 40 * DAY
    os.utime(zoo.blob("beta-net-2.onnx"), (old, old))
    (zoo.home / "optimized").mkdir()
    (zoo.home / "optimized" / f"{sha256(zoo.data['beta-net-2.onnx'])}.cpu.all.ort1.onnx").write_bytes(b"o")
    assert plan_prune(scan(), older_than=timedelta(days=30)).items == ()
    assert len(plan_prune(scan(), older_than=timedelta(days=30), now=time.time() + 31 * DAY).items) == 3


@pytest.mark.parametrize("bad", ["30", "x", "30x", "-1d", "d"])
def test_prune_rejects_bad_durations(zoo: Zoo, bad: str) -> None:
    assert "is not a duration" in run("prune", "--older-than", bad, code=2).stderr


def test_prune_skips_a_blob_in_use(zoo: Zoo) -> None:
    from filelock import FileLock

    orphan = zoo.home / "blobs" / "sha256" / sha256(b"orphan")
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"orphan")
    (zoo.home / "locks").mkdir()
    with FileLock(zoo.home / "locks" / f"{sha256(b'orphan')}.lock"):
        result = run("prune", "--yes")
    assert "in use by another zoo process" in result.stderr and orphan.exists()
    run("prune", "--yes")
    assert not orphan.exists()


# -- clear ----------------------------------------------------------------------------------------------


def test_clear_requires_yes(zoo: Zoo) -> None:
    import_all(zoo)
    before = tree(zoo.home)
    result = run("clear", code=2)
    assert "without --yes" in result.stderr and "zoo cache clear --dry-run" in result.stderr
    assert "dry run" in run("clear", "--dry-run").stderr
    assert tree(zoo.home) == before


def test_clear_keeps_only_the_tag(zoo: Zoo) -> None:
    import_all(zoo)
    (zoo.home / "partial" / f"{'a' * 64}.part").write_bytes(b"half")
    result = run("clear", "--yes")
    assert "freed" in result.stdout
    assert sorted(p.name for p in zoo.home.iterdir()) == ["CACHEDIR.TAG", "locks"]
    assert list((zoo.home / "locks").iterdir()) == []
    assert json.loads(run("ls", "--json").stdout)["bytes"] == 0


# -- never outside the root -----------------------------------------------------------------------------


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "precious.txt").write_text("keep me")
    return folder


def test_symlinks_out_of_the_cache_are_removed_as_links_only(zoo: Zoo, outside: Path) -> None:
    import_all(zoo)
    models = zoo.home / "models"
    (models / "beta-net-2" / "evil").symlink_to(outside / "precious.txt")
    (models / "beta-net-2" / "evil-dir").symlink_to(outside)
    (models / "evil-model").symlink_to(outside)
    run("prune", "--yes")
    assert not (models / "beta-net-2" / "evil").is_symlink()  # a stale view: unlinked
    run("rm", "beta", "--yes")
    assert not (models / "beta-net-2").exists()
    run("clear", "--yes")
    assert not (models / "evil-model").is_symlink()
    assert sorted(p.name for p in outside.iterdir()) == ["precious.txt"]
    assert (outside / "precious.txt").read_text() == "keep me"


def test_execute_refuses_paths_outside_the_root(zoo: Zoo, outside: Path) -> None:
    run("import", str(zoo.file("beta-net-2.onnx")))
    (zoo.home / "models" / "link").symlink_to(outside)
    plan = DeletePlan(zoo.home, (PlanItem(outside / "precious.txt", 7, "stale-view"),
                                 PlanItem(zoo.home / "models" / "link" / "precious.txt", 7, "stale-view"),
                                 PlanItem(outside, 0, "tree"), PlanItem(zoo.home, 0, "tree"),
                                 PlanItem(zoo.home / "CACHEDIR.TAG", 0, "temp")), "attack")
    result = plan.execute()
    assert result.deleted == () and all("outside the cache root" in why for _, why in result.skipped)
    assert (outside / "precious.txt").read_text() == "keep me" and (zoo.home / "CACHEDIR.TAG").is_file()


# -- wiring and import cost -----------------------------------------------------------------------------


def test_reachable_as_zoo_cache(zoo: Zoo) -> None:
    from zoo.cli import cli

    if "cache" not in cli.commands:
        pytest.skip("zoo.cli does not attach the `cache` group yet (cli.add_command(cache) is the lead's step)")
    result = CliRunner().invoke(cli, ["cache", "dir"], catch_exceptions=False)
    assert result.exit_code == 0 and result.stdout.strip() == str(zoo.home)


@pytest.mark.parametrize("first", ["zoo.cli.cache", "zoo.cli"])
def test_cache_cli_imports_light_in_either_order(first: str) -> None:
    heavy = ("numpy", "requests", "huggingface_hub", "onnx", "onnxruntime", "PIL", "tqdm", "filelock")
    code = (f"import sys, importlib; importlib.import_module({first!r}); import zoo.cli.cache, zoo.cli; "
            f"print([m for m in {heavy!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"

"""zoo.ray: the same folder job on a local Ray instance gives the same rows as predict_iter, in order.

Needs the `ray` extra (pip install 'zoo-client[ray]'); the Ray tests skip without it, the import
checks run everywhere. The local instance is started once for the module, bound to 127.0.0.1.

Environment: Ray's workers inherit the environment the driver had at ray.init(). The fixture
starts Ray with ZOO_HOME on an empty folder and ZOO_OFFLINE=1, so an actor that used that inherited
environment could find no model; the per-test ZOO_HOME (conftest) reaches the actors only through
predict_dataset's runtime_env env_vars (zoo.ray.FORWARDED_ENV), which is what these tests exercise.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import DATA, need, zoo_cli

import zoo
import zoo.ray  # light: ray itself is imported only when a function needs it
from zoo.errors import UnknownModelError, ZooError
from zoo.index.catalog import load_index
from zoo.store import download

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")  # Ray's own settings

MODELS = ("shufflenet-v2-12-int8", "mobilenetv2-12-int8")
COUNT, CORRUPT = 30, 17


@pytest.fixture(scope="module")
def ray_local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A local Ray instance for the module: 2 CPUs, no dashboard, loopback only."""
    empty = tmp_path_factory.mktemp("inherited-zoo-home")
    patch = pytest.MonkeyPatch()
    # Read once, when ray is first imported (nothing before this fixture imports it): with clusters
    # off, the node address is 127.0.0.1 and the GCS, raylets and agents listen there only; with
    # them on (Linux's default) they listen on every interface.
    patch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    patch.setenv("RAY_AUTH_MODE", "disabled")
    patch.setenv("RAY_USAGE_STATS_ENABLED", "0")  # no test reaches the internet
    try:
        ray = pytest.importorskip("ray", reason="ray is not installed here (pip install 'zoo-client[ray]')")
        # What the workers inherit: no model and no network, so only the forwarded env can make them work.
        patch.setenv("ZOO_HOME", str(empty))
        patch.setenv("ZOO_OFFLINE", "1")
        patch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
        patch.delenv("ZOO_MIRROR", raising=False)
        # No _node_ip_address="127.0.0.1": ray.init swaps loopback for the machine's address anyway.
        ray.init(num_cpus=2, include_dashboard=False)
    finally:
        patch.undo()
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture
def seeded() -> None:
    for model_id in MODELS:
        entry = load_index().resolve(model_id).entry
        download.import_file(entry, entry.file, need(DATA / "models" / entry.file.name))


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """COUNT images cut and resized from the shared photos; the one at CORRUPT is text posing as a JPEG."""
    from PIL import Image

    photos = [Image.open(p).convert("RGB") for p in sorted(need(DATA / "images").glob("*.jp*g"))]
    folder = tmp_path_factory.mktemp("images")
    names = []
    for i in range(COUNT):
        path = folder / f"img_{i:03d}.{'png' if i % 6 == 5 else 'jpg'}"
        if i == CORRUPT:
            path.write_text("not a picture")
        else:
            photo = photos[i % len(photos)]
            w, h = photo.size
            crop = photo.crop((i * 7 % (w // 4), i * 5 % (h // 4), w - i * 3 % (w // 4), h - i * 11 % (h // 4)))
            crop = crop.resize((160 + i * 13 % 200, 140 + i * 17 % 180))
            crop.convert("L").save(path) if i % 6 == 5 else crop.save(path, quality=85)
        names.append(str(path))
    return names


def assert_same_rows(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    """Identical rows, scores within 1e-6 (a different batch split may round differently)."""
    assert [r["input"] for r in got] == [r["input"] for r in want]
    for g, w in zip(got, want, strict=True):
        assert g.keys() == w.keys(), g["input"]
        if "error" in w:
            assert g == w
            continue
        assert {k: g[k] for k in ("model", "provider", "task")} == {k: w[k] for k in ("model", "provider", "task")}
        assert [(p["index"], p["label"]) for p in g["predictions"]] == [(p["index"], p["label"])
                                                                       for p in w["predictions"]]
        assert [p["score"] for p in g["predictions"]] == pytest.approx([p["score"] for p in w["predictions"]],
                                                                       abs=1e-6)


@pytest.mark.parametrize("model_id", MODELS)
def test_ray_rows_match_the_local_run_in_input_order(ray_local: Any, seeded: None, images: list[str],
                                                     model_id: str) -> None:
    local = [r.to_dict() for r in zoo.load(model_id).predict_iter(images, batch_size=16, topk=3)]
    # batch_size 7: five batches over two actors, so rows come back out of order unless re-sequenced.
    remote = zoo.ray.predict_paths(model_id, images, batch_size=7, concurrency=2, topk=3)
    assert [r["input"] for r in remote] == images
    assert_same_rows(remote, local)
    assert remote[CORRUPT] == local[CORRUPT]  # the same error row, hint included
    assert "not an image" in remote[CORRUPT]["error"]
    assert sum("error" in r for r in remote) == 1


def test_predict_dataset_gives_flat_columns(ray_local: Any, seeded: None, images: list[str]) -> None:
    dataset = ray_local.data.from_items([{"file": p} for p in images[:10]])
    rows = zoo.ray.predict_dataset(MODELS[0], dataset, column="file", batch_size=4, concurrency=1, topk=1).take_all()
    assert all(set(r) == set(zoo.ray.COLUMNS) for r in rows)  # no index column in, none out
    by_input = {r["input"]: r for r in rows}
    assert sorted(by_input) == images[:10]
    top = json.loads(by_input[images[0]]["predictions"])
    assert len(top) == 1 and top[0]["label"] == zoo.load(MODELS[0]).predict(images[0], topk=1).predictions[0].label


def test_the_ray_client_path_drives_the_pipeline_from_an_actor(ray_local: Any, seeded: None,
                                                                images: list[str]) -> None:
    """Over ray:// (Ray Client) an actor on the cluster runs the pipeline; here the same code runs locally."""
    local = [r.to_dict() for r in zoo.load(MODELS[0]).predict_iter(images, topk=2)]
    rows = list(zoo.ray._iter_through_client(ray_local, MODELS[0], images, {"batch_size": 8, "topk": 2}))
    assert_same_rows(rows, local)


def test_an_actor_error_comes_back_as_a_zoo_error(ray_local: Any, seeded: None, images: list[str]) -> None:
    # env={}: the actors keep what they inherited (an empty cache, offline), as a node without the model would.
    with pytest.raises(ZooError) as caught:
        zoo.ray.predict_paths(MODELS[0], images[:3], env={})
    assert caught.value.what.startswith("in a Ray actor: ")
    assert "not cached" in caught.value.what and "zoo cache import" in caught.value.hint
    assert caught.value.exit_code == 2


def test_an_unknown_model_fails_on_the_driver(ray_local: Any) -> None:
    with pytest.raises(UnknownModelError):
        zoo.ray.predict_paths("resnet5O", ["a.jpg"])


def test_cli_on_ray_writes_rows_and_resumes_through_the_one_row_loop(ray_local: Any, seeded: None, images: list[str],
                                                                     tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    first = zoo_cli("predict", MODELS[0], *images[:20], "-o", str(out), "--top-k", "2", "--batch-size", "8", "--ray",
                    code=2)  # one image is broken: an error row, and exit 2
    written = [json.loads(line) for line in out.read_text().splitlines()]
    local = [r.to_dict() for r in zoo.load(MODELS[0]).predict_iter(images[:20], topk=2)]
    assert_same_rows(written, local)
    assert "19 predicted, 1 error rows" in first.stderr

    resumed = zoo_cli("predict", MODELS[0], *images, "-o", str(out), "--top-k", "2", "--resume", "--ray")
    assert [json.loads(line)["input"] for line in out.read_text().splitlines()] == images
    assert "10 predicted, 0 error rows, 20 already in" in resumed.stderr

    rows = zoo_cli("predict", MODELS[0], *images[:4], "--json", "--top-k", "1", "--ray", "local")
    assert [json.loads(line)["input"] for line in rows.stdout.splitlines()] == images[:4]  # stdout: rows only


def _descendants(root: int) -> set[int]:
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(text.rsplit(")", 1)[1].split()[1])
    found, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        children = [p for p, parent in parents.items() if parent == pid and p not in found]
        found.update(children)
        frontier.extend(children)
    return found


def listening(root: int) -> list[tuple[str, str]]:
    """(process name, local address) of the TCP sockets that `root` and its descendants listen on."""
    if shutil.which("ss") is None or not Path("/proc/self/stat").exists():
        pytest.skip("needs `ss` and /proc to list listening sockets")
    ours = _descendants(root)
    found = []
    for line in subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout.splitlines():
        found += [(name, line.split()[3]) for name, pid in re.findall(r'\("([^"]+)",pid=(\d+)', line)
                  if int(pid) in ours]
    return sorted(found)


def assert_loopback_only(sockets: list[tuple[str, str]]) -> None:
    print("Ray listening sockets:", sockets)
    assert {"gcs_server", "raylet"} <= {name for name, _ in sockets}, sockets
    for name, address in sockets:
        host = address.rsplit(":", 1)[0].strip("[]")
        assert host in ("127.0.0.1", "::ffff:127.0.0.1", "::1"), f"{name} listens on {address}"


def test_ray_listens_on_loopback_only(ray_local: Any) -> None:
    assert ray_local.util.get_node_ip_address() == "127.0.0.1"
    assert_loopback_only(listening(os.getpid()))


def test_connect_local_starts_a_loopback_only_instance(tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="ray is not installed here (pip install 'zoo-client[ray]')")
    code = ("import sys, zoo.ray\n"
            "ray = zoo.ray.connect('local')\n"
            "print(ray.util.get_node_ip_address(), flush=True)\n"
            "sys.stdin.read()\n")  # stay up until the test has looked at the sockets
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_ADDRESS")}
    env.update(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "127.0.0.1"
        assert_loopback_only(listening(proc.pid))
    finally:
        proc.communicate("", timeout=60)


def test_zoo_cli_does_not_import_ray() -> None:
    code = "import sys, zoo, zoo.cli; print(sorted(m for m in ('ray', 'zoo.ray', 'pyarrow') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_without_ray_the_error_says_how_to_install_it() -> None:
    code = ("import sys; sys.modules['ray'] = None\n"  # None in sys.modules makes `import ray` fail
            "import zoo.ray\n"
            "from zoo.errors import ZooError\n"
            "try:\n    zoo.ray.predict_paths('mobilenetv2-12-int8', ['a.jpg'])\n"
            "except ZooError as exc:\n    print(exc.hint)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert "pip install 'zoo-client[ray]'" in out.stdout


def _ray_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS",)}
    env.update(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0", **extra)
    return env


CONNECT = """\
import json, sys, time
import zoo.ray
from zoo.errors import ZooError
start = time.monotonic()
try:
    zoo.ray.connect(sys.argv[1])
except ZooError as exc:
    print(json.dumps({"what": exc.what, "hint": exc.hint, "code": exc.exit_code, "secs": time.monotonic() - start}))
"""


def _connect_in_a_subprocess(address: str) -> dict[str, Any]:
    """connect() in a fresh process (Ray reads its settings at import; this one must not import it first)."""
    pytest.importorskip("ray", reason="ray is not installed here (pip install 'zoo-client[ray]')")
    out = subprocess.run([sys.executable, "-c", CONNECT, address], capture_output=True, text=True, timeout=120,
                         env=_ray_env())
    assert out.stdout.strip(), out.stderr
    return json.loads(out.stdout)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_ray_client_with_nothing_listening_fails_fast_with_the_reason() -> None:
    """It took Ray Client 31 s to say "connection timeout"."""
    port = _free_port()
    failed = _connect_in_a_subprocess(f"ray://127.0.0.1:{port}")
    assert failed["secs"] < 5, failed
    assert failed["what"] == f"cannot reach a Ray Client server at 127.0.0.1:{port}: nothing listens there " \
                             "(connection refused)"
    assert "ray start --head" in failed["hint"] and failed["code"] == 2


def test_a_listener_that_is_not_ray_client_fails_fast_and_is_not_told_to_start_one() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)  # accepts (the kernel's backlog) and never answers: as a wrong port would
        port = server.getsockname()[1]
        failed = _connect_in_a_subprocess(f"ray://127.0.0.1:{port}")
    assert failed["secs"] < 8, failed
    assert "accepts connections but does not answer as a Ray Client (gRPC) server" in failed["what"]
    assert "start one" not in failed["hint"] and "10001" in failed["hint"]


@pytest.mark.parametrize("address", ["ray://127.0.0.1:port", "ray://[::1", "ray://[zz::1]:10001"])
def test_bad_ray_addresses_are_usage_errors(address: str) -> None:
    failed = _connect_in_a_subprocess(address)  # urllib's ValueError for the last two was a crash before
    assert failed["what"].startswith(f"bad Ray address {address!r}") and failed["code"] == 2


def test_a_successful_cli_run_prints_no_ray_noise(seeded: None, images: list[str], tmp_path: Path,
                                                  isolated_env: Path) -> None:
    """No ERROR (actor constructor arguments), no INFO lines, no Ray Data progress: only zoo's summary."""
    pytest.importorskip("ray", reason="ray is not installed here (pip install 'zoo-client[ray]')")
    out = tmp_path / "rows.jsonl"
    run = subprocess.run([sys.executable, "-m", "zoo", "predict", MODELS[0], *images[:6], "--ray", "local",
                          "-o", str(out)], capture_output=True, text=True, timeout=300,
                         env=_ray_env(ZOO_HOME=str(isolated_env)))
    assert run.returncode == 0, run.stderr
    assert run.stderr.splitlines() == ["6 predicted, 0 error rows"], run.stderr
    assert [json.loads(line)["input"] for line in out.read_text().splitlines()] == images[:6]

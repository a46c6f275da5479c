"""Tables crafted to exhaust, confuse or run code: a .npy header claiming more than the file holds, a pickle,
CSV cells over the csv module's limit."""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from conftest import zoo_cli
from reliability_helpers import assert_clear_error, zoo

PWNED = "pwned-by-pickle"


@pytest.fixture(scope="module")
def tabular(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user model that takes rows of 4 numbers (a small random forest on iris)."""
    skl2onnx = pytest.importorskip("skl2onnx", reason="skl2onnx is in the test extra")
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier

    x, y = load_iris(return_X_y=True)
    clf = RandomForestClassifier(n_estimators=3, random_state=0).fit(x.astype(np.float32), y)
    path = tmp_path_factory.mktemp("tab") / "forest.onnx"
    path.write_bytes(skl2onnx.to_onnx(clf, x[:1].astype(np.float32)).SerializeToString())
    return path


def _npy(header_shape: tuple[int, ...], data: bytes, descr: str = "<f4") -> bytes:
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": descr, "fortran_order": False, "shape": header_shape})
    return out.getvalue() + data


class _Payload:
    def __reduce__(self) -> tuple[object, tuple[str]]:  # unpickling would create the file PWNED
        return (open, (PWNED, "w"))


def _pickled_npy() -> bytes:
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": "|O", "fortran_order": False, "shape": (1,)})
    return out.getvalue() + pickle.dumps(np.array([_Payload()], dtype=object))


CASES = [
    pytest.param(_npy((10**11, 4), b"\0" * 16), "holds 16 bytes of data, but its header declares [100000000000, 4]",
                 id="claims-1.6-TB"),  # np.load allocated that first: MemoryError, exit 1
    pytest.param(_npy((2, 4), b"\0" * 8), "holds 8 bytes of data, but its header declares [2, 4] float32", id="short"),
    pytest.param(_pickled_npy(), "Object arrays cannot be loaded when allow_pickle=False", id="pickle"),
    pytest.param(b"\x93NUMPY\x01\x00\xff\xff" + b"x" * 100, "cannot read", id="garbage-header"),
    pytest.param(b"", "cannot read", id="empty"),
]


@pytest.mark.parametrize(("data", "message"), CASES)
def test_crafted_npy_is_refused(tabular: Path, isolated_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                data: bytes, message: str) -> None:
    zoo_cli("add", str(tabular), "--id", "forest", "--task", "tabular-classification")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.npy").write_bytes(data)
    result = zoo("predict", "forest", "t.npy")
    assert_clear_error(result, 2, "t.npy", message)
    assert not (tmp_path / PWNED).exists()  # nothing was unpickled


def test_a_good_npy_still_predicts(tabular: Path, isolated_env: Path, tmp_path: Path) -> None:
    zoo_cli("add", str(tabular), "--id", "forest", "--task", "tabular-classification")
    np.save(tmp_path / "t.npy", np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], np.float32))
    result = zoo("predict", "forest", str(tmp_path / "t.npy"), "--json")
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["predictions"][0]["label"] for r in rows] == [0, 2]  # setosa, virginica (class indices)


@pytest.mark.parametrize(("text", "message"), [
    pytest.param("1" * 200_000 + ",1,1,1\n", "field larger than field limit", id="cell-over-128-KiB"),  # exit 1 before
    pytest.param("1,2,3,4\n1,2\n", "rows have [2, 4] cells", id="ragged"),
    pytest.param("a,b,c,d\n", "has no rows", id="header-only"),
])
def test_crafted_csv_is_refused(tabular: Path, isolated_env: Path, tmp_path: Path, text: str, message: str) -> None:
    zoo_cli("add", str(tabular), "--id", "forest", "--task", "tabular-classification")
    (tmp_path / "t.csv").write_text(text)
    assert_clear_error(zoo("predict", "forest", str(tmp_path / "t.csv")), 2, "t.csv", message)

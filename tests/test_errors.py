"""zoo's errors survive pickling whole (worker processes: zoo bench's sides, multiprocessing, Ray)."""

from __future__ import annotations

import pickle

import pytest

from zoo import errors
from zoo.serve.errors import LoadError, RequestError

SAMPLES = [
    errors.ZooError("plain", hint="do this"),
    errors.ManifestError("m.json", "mine-1", "file.sha256", "must be 64 hex digits"),
    errors.UnknownModelError("resnet5O", ["resnet50", "resnet18"]),
    errors.OpsetError("resnet50", 99, [("resnet50-v1-7", 7), ("resnet50-v2-7", 7)]),
    errors.DownloadError("no source answered", hint="check the network"),
    errors.HashMismatchError("mnist-8", "https://mirror/x", expected_sha256="a" * 64, got_sha256="b" * 64,
                             expected_size=10, got_size=9),
    errors.NotCachedError("mnist-8", "/cache/models/mnist-8.onnx"),
    errors.CacheError("cache broken", hint="zoo cache verify"),
    errors.ImageError("frog.jpg", "truncated"),
    errors.InputError("bad rows", expected=["a .npy file"]),
    errors.ProviderError("no CUDA here", hint="pip install onnxruntime-gpu"),
    RequestError("bad shape", status=400, hint="send [1, 3, 224, 224]"),
    LoadError("mnist-8", errors.InputError("no graph", expected=["an .onnx file"])),
]


@pytest.mark.parametrize("error", SAMPLES, ids=[type(e).__name__ for e in SAMPLES])
def test_an_error_pickles_to_the_same_facts(error: errors.ZooError) -> None:
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is type(error)
    assert (back.what, back.hint, back.message, str(back), back.exit_code) == \
           (error.what, error.hint, error.message, str(error), error.exit_code)
    assert {k: v for k, v in vars(back).items() if k != "cause"} == \
           {k: v for k, v in vars(error).items() if k != "cause"}


def test_a_long_unknown_name_is_clipped_in_the_message() -> None:
    error = errors.UnknownModelError("x" * 100_000)
    assert len(error.what) < 200 and "(100000 characters)" in error.what
    assert error.name == "x" * 100_000  # the facts keep it whole

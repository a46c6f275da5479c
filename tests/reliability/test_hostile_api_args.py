"""The Python API given arguments of the wrong kind: an InputError naming the argument, never a TypeError.

Before, zoo.load(providers=5) raised TypeError from deep inside, labels=[1, 2] and recipe=5 were
taken silently, opset="12" said no variant had opset 12, and predict(topk=0) or predict_iter(batch_size=0)
ran anyway. Every check runs before a model is resolved or loaded, so these need no model file.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import zoo
from zoo.errors import InputError

LOAD = [
    ({"name_or_path": None}, "name_or_path=None (NoneType)"),
    ({"name_or_path": 5}, "name_or_path=5 (int)"),
    ({"opset": "12"}, "opset='12' (str)"),
    ({"opset": True}, "opset=True (bool)"),
    ({"threads": "2"}, "threads='2' (str)"),
    ({"providers": 5}, "providers=5 (int)"),
    ({"providers": [None]}, "providers=[None] (list)"),
    ({"labels": [1, 2]}, "labels=[1, 2] (list)"),
    ({"labels": {"cat": 0}}, "labels={'cat': 0} (dict)"),
    ({"recipe": 5}, "recipe=5 (int)"),
]


@pytest.mark.parametrize(("args", "message"), LOAD, ids=[m for _, m in LOAD])
def test_load_refuses_arguments_of_the_wrong_kind(args: dict, message: str) -> None:
    name = args.pop("name_or_path", "no-such-model-anywhere")  # a wrong kind is named before the name is resolved
    with pytest.raises(InputError) as caught:
        zoo.load(name, **args)
    assert caught.value.what == message and caught.value.hint.startswith("expected: ")


DECODE = [
    ({"topk": 0}, "topk=0: it is how many classes to keep"),
    ({"topk": -1}, "topk=-1: it is how many classes to keep"),
    ({"topk": True}, "topk=True: it is how many classes to keep"),
    ({"topk": 2.5}, "topk=2.5: it is how many classes to keep"),
    ({"score_threshold": 2}, "score_threshold=2: it is a score between 0 and 1"),
    ({"score_threshold": float("nan")}, "score_threshold=nan: it is a score between 0 and 1"),
    ({"score_threshold": "0.5"}, "score_threshold='0.5': it is a score between 0 and 1"),
]


@pytest.mark.parametrize(("args", "message"), DECODE, ids=[m.split(":")[0] for _, m in DECODE])
def test_decode_options_are_checked(args: dict, message: str) -> None:
    from zoo.runners import DecodeOptions

    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        DecodeOptions(**args)
    assert DecodeOptions(topk=3, score_threshold=0.0).topk == 3  # the edges that are fine


def test_predict_iter_checks_its_arguments_before_the_first_row(tmp_path: Path) -> None:
    from conftest import DATA, need

    model = zoo.load(str(need(DATA / "models" / "mnist-8.onnx")))
    for args, message in (({"batch_size": 0}, "batch_size=0"), ({"workers": 0}, "workers=0"),
                          ({"topk": 0}, "topk=0")):
        with pytest.raises(InputError, match=message):
            next(model.predict_iter([str(tmp_path / "never-read.png")], **args))

"""zoo: a client and local cache manager for the ONNX Model Zoo.

Importing zoo is cheap: heavy libraries (numpy, onnxruntime, requests, ...)
load only when a function needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from zoo.errors import (
    CacheError,
    DownloadError,
    HashMismatchError,
    ImageError,
    InputError,
    ManifestError,
    NotCachedError,
    OpsetError,
    ProviderError,
    UnknownModelError,
    ZooError,
)
from zoo.version import __version__

if TYPE_CHECKING:
    from zoo.api import ModelInfo, add, info, list_models, pull, remove, resolve, search
    from zoo.model import Model, load
    from zoo.prediction import Prediction

# The API loads on first use (PEP 562): `import zoo; zoo.load(...)` then imports only what loading
# a model needs (zoo.model), not the add/remove/search machinery of zoo.api; `import zoo` alone
# imports errors and the version. Each name maps to the module that defines it.
_LAZY = {"Model": "zoo.model", "load": "zoo.model", "Prediction": "zoo.prediction", "ModelInfo": "zoo.api",
         "add": "zoo.api", "info": "zoo.api", "list_models": "zoo.api", "pull": "zoo.api", "remove": "zoo.api",
         "resolve": "zoo.api", "search": "zoo.api"}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        return _submodule(name)
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def _submodule(name: str) -> object:
    """`zoo.api`, `zoo.runtime`...: reachable as attributes after `import zoo`, as when __init__ imported them."""
    if not name.startswith("_"):
        try:
            return importlib.import_module(f"zoo.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"zoo.{name}":
                raise
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})

__all__ = [
    "CacheError",
    "DownloadError",
    "HashMismatchError",
    "ImageError",
    "InputError",
    "ManifestError",
    "Model",
    "ModelInfo",
    "NotCachedError",
    "OpsetError",
    "Prediction",
    "ProviderError",
    "UnknownModelError",
    "ZooError",
    "__version__",
    "add",
    "info",
    "list_models",
    "load",
    "pull",
    "remove",
    "resolve",
    "search",
]

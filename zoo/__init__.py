"""zoo: a client and local cache manager for the ONNX Model Zoo.

Importing zoo is cheap: heavy libraries (numpy, onnxruntime, requests, ...)
load only when a function needs them.
"""

from __future__ import annotations

from zoo.api import Model, ModelInfo, Prediction, info, list_models, load, pull, resolve, search
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
    "info",
    "list_models",
    "load",
    "pull",
    "resolve",
    "search",
]

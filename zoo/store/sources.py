"""Where a file can come from, in the order sources are tried.

Mirrors (ZOO_MIRROR, comma-separated, or --mirror) are laid out like the zoo
repo; then Hugging Face: onnxmodelzoo/legacy_models with the zoo path, then
the per-model repo onnxmodelzoo/<id> with <id>.onnx at its root.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote

from zoo.index.manifest import FileEntry, ModelEntry
from zoo.printable import shown

HF_ORG = "onnxmodelzoo"
HF_LEGACY_REPO = f"{HF_ORG}/legacy_models"
HF_REVISION = "main"
DEFAULT_HF_ENDPOINT = "https://huggingface.co"


@dataclass(frozen=True, slots=True)
class Source:
    """One place to fetch one file from."""

    kind: Literal["mirror", "huggingface"]
    url: str  # may hold user:password@ for a mirror: print `shown`, never `url`
    repo_id: str | None = None
    filename: str | None = None
    revision: str | None = None

    @property
    def shown(self) -> str:
        """The URL as zoo prints it: credentials redacted, control characters escaped."""
        return shown(self.url)


def mirrors(extra: Sequence[str] = ()) -> list[str]:
    """Mirror base URLs: explicit ones first, then ZOO_MIRROR; anything but http(s)://host is refused."""
    env = [m.strip() for m in os.environ.get("ZOO_MIRROR", "").split(",") if m.strip()]
    for url in extra:
        _check_mirror(url, "--mirror")
    for url in env:
        _check_mirror(url, "ZOO_MIRROR")
    return list(dict.fromkeys([*extra, *env]))


def _check_mirror(url: str, where: str) -> None:
    from zoo.errors import ZooError

    if not _web_url(url):
        raise ZooError(f"mirror {shown(url)!r} (from {where}) is not an http:// or https:// URL with a host",
                       hint="use e.g. http://mirror.local:8000; serve a folder with `python -m http.server`")


def _web_url(url: str) -> bool:
    """Whether `url` is http(s)://HOST[:PORT]... that urllib, requests and huggingface_hub can all parse."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        return parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # an unclosed bracket, a bracketed host that is no IPv6 address, a port out of range
        return False


def hf_endpoint() -> str:
    """The Hugging Face endpoint: HF_ENDPOINT (as huggingface_hub reads it: empty means the default), checked."""
    from zoo.errors import ZooError

    value = os.environ.get("HF_ENDPOINT", "").strip().rstrip("/")
    if not value:
        return DEFAULT_HF_ENDPOINT
    if not _web_url(value):  # huggingface_hub would fail to import, with a ValueError
        raise ZooError(f"HF_ENDPOINT {shown(value)!r} is not an http:// or https:// URL with a host",
                       hint=f"unset it to use {DEFAULT_HF_ENDPOINT}, or set it to your Hub mirror's URL")
    return value


def plan(entry: ModelEntry, file: FileEntry | None = None, *, extra_mirrors: Sequence[str] = ()) -> list[Source]:
    """Every source for `file` (default: the model file), in the order to try them.

    A model of the user's own manifest (`zoo add`) is never looked up on Hugging Face: it is not
    there, and asking would tell a third party its name. Only the mirrors are tried for it.
    """
    from zoo.index.user_manifest import FAMILY

    file = file or entry.file
    out = [Source("mirror", f"{base.rstrip('/')}/{quote(file.path)}") for base in mirrors(extra_mirrors)]
    if entry.family == FAMILY:
        return out
    endpoint = hf_endpoint()
    out.append(_hf_source(endpoint, HF_LEGACY_REPO, file.path))
    suffix = file.name.rsplit(".", 1)[-1] if file.name.endswith(".onnx") else "tar.gz"
    out.append(_hf_source(endpoint, f"{HF_ORG}/{entry.id}", f"{entry.id}.{suffix}"))
    return out


def _hf_source(endpoint: str, repo_id: str, filename: str) -> Source:
    # The same URL huggingface_hub.hf_hub_url builds; formatted here so that planning
    # (`zoo info`) does not import huggingface_hub. request_url() asks the library.
    url = f"{endpoint}/{repo_id}/resolve/{quote(HF_REVISION, safe='')}/{quote(filename)}"
    return Source("huggingface", url, repo_id, filename, HF_REVISION)


def request_url(source: Source) -> str:
    """The URL to GET for `source`; Hugging Face URLs come from huggingface_hub."""
    if source.kind != "huggingface" or source.repo_id is None or source.filename is None:
        return source.url
    from huggingface_hub import hf_hub_url  # heavy: only when a download starts

    # huggingface_hub reads HF_ENDPOINT once at import; pass the current one explicitly.
    return hf_hub_url(source.repo_id, source.filename, revision=source.revision or HF_REVISION, endpoint=hf_endpoint())


def request_headers(source: Source) -> dict[str, str]:
    """HTTP headers for `source`: the Hugging Face token only ever goes to Hugging Face."""
    headers = {"User-Agent": f"zoo/{_version()}", "Accept-Encoding": "identity"}  # bytes exactly as hashed
    if source.kind == "huggingface":
        # Not build_hf_headers(): building its user agent fetches {ENDPOINT}/api/agent-harnesses
        # (huggingface_hub >= 1.x telemetry), an extra request to an endpoint fixed at import time.
        # get_token_to_send is the token choice build_hf_headers makes: HF_TOKEN, then `hf auth login`,
        # unless HF_HUB_DISABLE_IMPLICIT_TOKEN is set.
        # heavy: only when a download starts; public in huggingface_hub.utils, though not in its __all__
        from huggingface_hub.utils import get_token_to_send  # type: ignore[attr-defined]

        token = get_token_to_send(None)
        if token:
            headers["Authorization"] = f"Bearer {token}"
    return headers


def _version() -> str:
    from zoo.version import __version__

    return __version__

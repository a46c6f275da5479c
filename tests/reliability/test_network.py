"""Hostile networks: trickling servers, odd Retry-After values and settings, redirects out of bounds, secrets.

Each case runs `zoo pull` against real loopback mirrors (ZOO_MIRROR="A,B" where A misbehaves and B is
good, unless the case says otherwise); the low-speed window is shrunk to 1 s so a trickle is caught in
seconds. Nothing cached is ever unverified (assert_cache_clean).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from reliability_helpers import (
    MIB,
    Mirror,
    assert_cache_clean,
    assert_clear_error,
    partial_of,
    synthetic,
    use_models,
    write_manifest,
    zoo,
)
from servers import Fault

from zoo.errors import ZooError
from zoo.store.netpolicy import MAX_WAIT, Settings, address_kind, redirect_refusal, retry_after, source_kinds
from zoo.store.sources import hf_endpoint

MODEL = synthetic("rel-net-1", MIB + 777, seed=12)
SECRET = "s3cr3t-pa55"
ESC = "\x1b]0;owned\x07\x1b[2J"


@pytest.fixture
def mirrors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    use_models(monkeypatch, tmp_path / "manifests", MODEL)
    monkeypatch.setenv("ZOO_LOW_SPEED_TIME", "1")
    monkeypatch.setenv("ZOO_LOW_SPEED_LIMIT", "1000")
    with Mirror(MODEL.files()) as a, Mirror(MODEL.files()) as b:
        monkeypatch.setenv("ZOO_MIRROR", f"{a.url},{b.url}")
        yield a, b


def pulled(result) -> dict:
    assert result.exit_code == 0, result.stderr
    [item] = json.loads(result.stdout)
    assert Path(item["path"]).read_bytes() == MODEL.data
    return item


# -- 1. trickle: a low-speed limit over a window, then the next source --------------------------------


@pytest.mark.parametrize("fault", [Fault(trickle_headers=1.0), Fault(trickle_body=1.0)], ids=["headers", "body"])
def test_trickling_mirror_is_left_within_the_window(
    mirrors: tuple[Mirror, Mirror], isolated_env: Path, fault: Fault
) -> None:
    a, b = mirrors
    a.inject(MODEL.path, fault, forever=True)
    started = time.monotonic()
    item = pulled(zoo("pull", "--quiet", "--json", MODEL.model_id))
    elapsed = time.monotonic() - started
    assert item["source"].startswith(b.url)
    assert elapsed < 6, f"took {elapsed:.1f} s with a 1 s low-speed window"
    assert len(a.gets()) == 1  # too slow is not retried against the same source
    assert assert_cache_clean(isolated_env) == 1


def test_trickle_message_names_the_limit(mirrors: tuple[Mirror, Mirror], monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = mirrors
    a.inject(MODEL.path, Fault(trickle_body=1.0), forever=True)
    b.inject(MODEL.path, Fault(trickle_headers=1.0), forever=True)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    result = zoo("pull", "--quiet", MODEL.model_id)
    assert_clear_error(result, 3, "too slow", "bytes of body", "bytes of response headers", "ZOO_LOW_SPEED_LIMIT",
                       f"{a.url}/{MODEL.path}", f"{b.url}/{MODEL.path}")


def test_slow_but_steady_mirror_is_kept(mirrors: tuple[Mirror, Mirror], isolated_env: Path) -> None:
    a, _ = mirrors
    a.rate = 2 * MIB  # well above the 1000 B/s limit: a slow link is not a trickle
    item = pulled(zoo("pull", "--quiet", "--json", MODEL.model_id))
    assert item["source"].startswith(a.url)


def test_trickled_partial_is_resumed_by_the_next_source(
    mirrors: tuple[Mirror, Mirror], isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = mirrors
    a.inject(MODEL.path, Fault(stall=30, stall_at=MIB // 2), forever=True)  # half a MiB, then silence
    monkeypatch.setenv("ZOO_TIMEOUT", "30")  # the read timeout alone would wait 30 s
    item = pulled(zoo("pull", "--quiet", "--json", MODEL.model_id))
    assert item["source"].startswith(b.url)
    [got] = b.gets(MODEL.path)
    assert got.range is not None and int(got.range.removeprefix("bytes=").rstrip("-")) > 0


# -- 2. Retry-After and the settings ------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [
    ("2", 2.0), ("0", 0.0), ("1.5", 1.5), ("-5", 0.0), ("NaN", None), ("nan", None), ("inf", MAX_WAIT),
    ("-inf", 0.0), ("1e999", MAX_WAIT), ("99999999999999999999", MAX_WAIT), ("soon", None), ("", None),
    (None, None), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0), ("Fri, 31 Dec 9999 23:59:59 GMT", MAX_WAIT),
    ("Thu, 01 Jan 1970 00:00:10 GMT", 0.0), ("Mon, 99 Foo 2020 99:99:99 GMT", None), ("\x1b[2J", None),
])
def test_retry_after_is_bounded(value: str | None, expected: float | None) -> None:
    assert retry_after(value, now=time.time()) == expected


def test_retry_after_date_counts_from_now() -> None:
    now = 1_700_000_000.0
    assert retry_after("Tue, 14 Nov 2023 22:13:30 GMT", now) == pytest.approx(10.0)


@pytest.mark.parametrize(("value", "served_by"), [
    ("NaN", "A"), ("-5", "A"), ("soon", "A"), ("\x1b[2J", "A"), ("Wed, 21 Oct 2015 07:28:00 GMT", "A"),
    ("inf", "B"), ("1e999", "B"), ("99999999999", "B"), ("Fri, 31 Dec 9999 23:59:59 GMT", "B"),
])
def test_any_retry_after_value_never_crashes(
    mirrors: tuple[Mirror, Mirror], isolated_env: Path, value: str, served_by: str
) -> None:
    a, b = mirrors
    a.inject(MODEL.path, Fault(status=429, headers={"Retry-After": value}))
    started = time.monotonic()
    result = zoo("pull", "--quiet", "--json", MODEL.model_id)
    item = pulled(result)
    assert time.monotonic() - started < 5  # nonsense means the backoff; a wait of MAX_WAIT or more, the next source
    assert item["source"].startswith((a if served_by == "A" else b).url)
    assert len(a.gets()) == (2 if served_by == "A" else 1)
    if served_by == "B":
        assert "not waiting 60 s or more" in result.stderr
    assert "\x1b" not in result.stderr


@pytest.mark.parametrize(("name", "value"), [
    ("ZOO_TIMEOUT", "nan"), ("ZOO_TIMEOUT", "inf"), ("ZOO_TIMEOUT", "-1"), ("ZOO_TIMEOUT", "soon"),
    ("ZOO_TIMEOUT", "0"), ("ZOO_TIMEOUT", "1e999"), ("ZOO_RETRIES", "nan"), ("ZOO_RETRIES", "inf"),
    ("ZOO_RETRIES", "2.5"), ("ZOO_RETRIES", "lots"), ("ZOO_RETRIES", "1e300"), ("ZOO_RETRY_BACKOFF", "nan"),
    ("ZOO_LOW_SPEED_LIMIT", "inf"), ("ZOO_LOW_SPEED_TIME", "0"), ("ZOO_LOW_SPEED_TIME", "nan"),
])
def test_bad_network_setting_exits_2_naming_it(
    mirrors: tuple[Mirror, Mirror], isolated_env: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    result = zoo("pull", "--quiet", MODEL.model_id)
    assert_clear_error(result, 2, name, "hint: set")
    assert [len(m.gets()) for m in mirrors] == [0, 0]  # refused before any request
    with pytest.raises(ZooError):
        Settings.from_env()


@pytest.mark.parametrize("value", ["http://[::1", "http://[zz::1]", "http://127.0.0.1:99999", "ftp://hub.local"])
def test_malformed_hf_endpoint_exits_2_naming_it(
    mirrors: tuple[Mirror, Mirror], isolated_env: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """huggingface_hub fails to import with a ValueError on the first three: it was zoo's exit 1."""
    monkeypatch.setenv("HF_ENDPOINT", value)
    result = zoo("pull", "--quiet", MODEL.model_id)
    assert_clear_error(result, 2, f"HF_ENDPOINT {value!r} is not an http:// or https:// URL", "hint: unset it")
    assert [len(m.gets()) for m in mirrors] == [0, 0]  # refused while planning, before any request


def test_empty_hf_endpoint_means_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for value in ("", " ", "https://hub.example.com/"):
        monkeypatch.setenv("HF_ENDPOINT", value)
        assert hf_endpoint() == (value.strip().rstrip("/") or "https://huggingface.co")  # as huggingface_hub reads it


def test_good_settings_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"ZOO_TIMEOUT": "7", "ZOO_RETRIES": "3", "ZOO_RETRY_BACKOFF": "0.2",
                        "ZOO_LOW_SPEED_LIMIT": "0", "ZOO_LOW_SPEED_TIME": "5"}.items():
        monkeypatch.setenv(name, value)
    assert Settings.from_env() == Settings((7.0, 7.0), 3, 0.2, 0.0, 5.0)


# -- 3. redirects: the rule as a pure function, then end to end ---------------------------------------

FAKE_DNS = {"mirror.example.com": ["93.184.215.14"], "cdn.example.net": ["2606:4700::6810:84e5"],
            "evil.example.com": ["127.0.0.1"], "lan-mirror.corp": ["192.168.1.20"], "other.corp": ["10.1.2.3"]}


def fake_resolve(host: str) -> list[str]:
    return FAKE_DNS.get(host, [host])


@pytest.mark.parametrize(("address", "kind"), [
    ("10.0.0.1", "private"), ("172.16.0.1", "private"), ("172.31.255.255", "private"), ("172.32.0.1", None),
    ("192.168.0.1", "private"), ("169.254.169.254", "link-local"), ("127.0.0.1", "loopback"),
    ("127.8.9.10", "loopback"), ("0.0.0.0", "loopback"), ("::1", "loopback"), ("fc00::1", "private"),
    ("fd12:3456::1", "private"), ("fe80::1", "link-local"), ("fe80::1%eth0", "link-local"),
    ("::ffff:127.0.0.1", "loopback"), ("::ffff:169.254.1.1", "link-local"), ("8.8.8.8", None),
    ("2606:4700::1", None), ("mirror.example.com", None),
])
def test_address_kinds(address: str, kind: str | None) -> None:
    assert address_kind(address) == kind


@pytest.mark.parametrize(("source", "target", "refused"), [
    ("https://mirror.example.com/m", "http://127.0.0.1:8000/x", "loopback"),
    ("https://mirror.example.com/m", "http://evil.example.com/x", "loopback"),  # a name that resolves to 127.0.0.1
    ("https://mirror.example.com/m", "http://[::1]/x", "loopback"),
    ("https://mirror.example.com/m", "http://169.254.169.254/latest/meta-data", "link-local"),
    ("https://mirror.example.com/m", "http://10.0.0.5/x", "private"),
    ("https://mirror.example.com/m", "http://[fd00::5]/x", "private"),
    ("https://mirror.example.com/m", "http://localhost/x", "loopback"),
    ("https://mirror.example.com/m", "https://cdn.example.net/x", None),
    ("http://127.0.0.1:8000/m", "http://127.0.0.1:9000/x", None),  # a loopback mirror within loopback
    ("http://lan-mirror.corp/m", "http://other.corp/x", None),  # a LAN mirror within the LAN
    ("http://lan-mirror.corp/m", "http://127.0.0.1/x", "loopback"),
    ("http://127.0.0.1:8000/m", "http://169.254.169.254/x", "link-local"),
    ("http://127.0.0.1:8000/m", "https://cdn.example.net/x", None),
    ("http://127.0.0.1:8000/m", "file:///etc/passwd", "only http"),
    ("https://mirror.example.com/m", "ftp://mirror.example.com/x", "only http"),
    ("https://mirror.example.com/m", "gopher://mirror.example.com/x", "only http"),
    ("http://127.0.0.1:8000/m", "http://[::1/x", "not a valid URL"),  # urllib's ValueError: refused, not a crash
    ("http://127.0.0.1:8000/m", "http://[zz::1]/x", "not a valid URL"),
])
def test_redirect_rule(source: str, target: str, refused: str | None) -> None:
    why = redirect_refusal(target, source=source_kinds(source, fake_resolve), resolve=fake_resolve)
    if refused is None:
        assert why is None
    else:
        assert why is not None and refused in why and "refused a redirect to" in why


@pytest.mark.parametrize("target", ["file:///etc/passwd", "ftp://127.0.0.1/model.onnx",
                                    "http://169.254.169.254/latest/meta-data/",
                                    "http://[::1/model.onnx", "http://[zz::1]/model.onnx"])  # malformed
def test_mirror_redirect_out_of_bounds_is_refused(
    mirrors: tuple[Mirror, Mirror], isolated_env: Path, target: str
) -> None:
    a, b = mirrors
    a.inject(MODEL.path, Fault(redirect_to=target), forever=True)
    started = time.monotonic()
    result = zoo("pull", "--json", MODEL.model_id)
    item = pulled(result)
    assert time.monotonic() - started < 5  # link-local: refused without trying to connect (10 s timeout)
    assert item["source"].startswith(b.url)
    for words in ("refused a redirect to", target, "trying the next source"):
        assert words in result.stderr, result.stderr
    assert len(a.gets()) == 1  # refused, not retried
    assert assert_cache_clean(isolated_env) == 1


def test_loopback_mirror_redirecting_within_loopback_works(mirrors: tuple[Mirror, Mirror], isolated_env: Path) -> None:
    a, b = mirrors
    a.inject(MODEL.path, Fault(redirect_to=f"http://localhost:{b.url.rsplit(':', 1)[1]}/{MODEL.path}"))
    item = pulled(zoo("pull", "--quiet", "--json", MODEL.model_id))
    assert item["source"].startswith(a.url)  # the source zoo was given; the bytes came from b through the redirect
    assert len(b.gets()) == 1 and len(a.gets()) == 1


# -- 4. credentials and terminal escapes are never printed raw ----------------------------------------


def with_credentials(url: str) -> str:
    return url.replace("http://", f"http://zoo-user:{SECRET}@")


def test_credentials_never_printed_on_failure(mirrors: tuple[Mirror, Mirror], monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = mirrors
    monkeypatch.setenv("ZOO_MIRROR", ",".join(with_credentials(m.url) for m in (a, b)))
    a.inject(MODEL.path, Fault(status=500, reason=f"Oops{ESC}"), forever=True)
    b.inject(MODEL.path, Fault(status=404, reason=f"Gone{ESC}", headers={"X-Error-Code": f"E{ESC}"}), forever=True)
    monkeypatch.setenv("ZOO_RETRIES", "2")
    result = zoo("pull", MODEL.model_id)
    assert_clear_error(result, 3, "***@127.0.0.1", "HTTP 500 Oops\\x1b]0;owned\\x07", "HTTP 404 Gone")
    assert SECRET not in result.stderr + result.stdout
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr
    assert a.gets()[0].headers.get("Authorization", "").startswith("Basic ")  # the credentials still work


def test_credentials_never_printed_on_success(mirrors: tuple[Mirror, Mirror], monkeypatch: pytest.MonkeyPatch) -> None:
    a, _ = mirrors
    monkeypatch.setenv("ZOO_MIRROR", with_credentials(a.url))
    result = zoo("pull", "--json", MODEL.model_id)
    item = pulled(result)
    assert item["source"] == f"http://***@127.0.0.1:{a.url.rsplit(':', 1)[1]}/{MODEL.path}"
    assert SECRET not in result.stdout + result.stderr


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_info_redacts_mirror_credentials(mirrors: tuple[Mirror, Mirror], monkeypatch: pytest.MonkeyPatch,
                                         as_json: bool) -> None:
    a, _ = mirrors
    monkeypatch.setenv("ZOO_MIRROR", with_credentials(a.url))
    result = zoo("info", MODEL.model_id, *(["--json"] if as_json else []))
    assert result.exit_code == 0, result.stderr
    assert SECRET not in result.stdout and "http://***@127.0.0.1" in result.stdout
    if as_json:
        assert json.loads(result.stdout)["sources"][0].startswith("http://***@")


def test_bad_mirror_url_error_redacts(monkeypatch: pytest.MonkeyPatch) -> None:
    result = zoo("pull", "--mirror", f"ftp://u:{SECRET}@host/zoo", "mnist-8")
    assert_clear_error(result, 2, "ftp://***@host/zoo")
    assert SECRET not in result.stderr


def test_manifest_escapes_never_reach_the_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entry = {**MODEL.manifest_entry(), "hub_name": f"Evil{ESC}Net", "license": f"MIT{ESC}"}
    monkeypatch.setenv("ZOO_MANIFESTS", str(write_manifest(tmp_path / "m", [entry])))
    result = zoo("info", MODEL.model_id)
    assert result.exit_code == 0, result.stderr
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout
    assert "Evil\\x1b]0;owned\\x07\\x1b[2JNet" in result.stdout
    as_json = zoo("info", MODEL.model_id, "--json").stdout
    assert "\x1b" not in as_json and f"Evil{ESC}Net" in as_json.encode().decode("unicode_escape")


def test_partial_kept_names_no_credentials(mirrors: tuple[Mirror, Mirror], isolated_env: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = mirrors
    monkeypatch.setenv("ZOO_MIRROR", ",".join(with_credentials(m.url) for m in (a, b)))
    for mirror in (a, b):
        mirror.inject(MODEL.path, Fault(drop_after=1000), forever=True)
    monkeypatch.setenv("ZOO_RETRIES", "1")
    result = zoo("pull", MODEL.model_id)
    assert_clear_error(result, 3, "run the same command again to resume")
    assert SECRET not in result.stderr
    assert partial_of(isolated_env, MODEL).stat().st_size > 0


def test_every_failed_model_of_a_pull_is_escaped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = synthetic("rel-net-2", 1000, seed=13)
    use_models(monkeypatch, tmp_path / "manifests", MODEL, other)
    with Mirror({**MODEL.files(), **other.files()}) as a:
        monkeypatch.setenv("ZOO_MIRROR", with_credentials(a.url))
        for model in (MODEL, other):
            a.inject(model.path, Fault(status=404, reason=f"Gone{ESC}"), forever=True)
        result = zoo("pull", MODEL.model_id, other.model_id)
    assert_clear_error(result, 3, MODEL.model_id, other.model_id)
    errors = result.stderr.split("error: ")[1:]  # each error with its source lines (the last with its hint)
    assert len(errors) == 2
    assert all("HTTP 404 Gone\\x1b]0;owned\\x07" in line for line in errors), errors
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr
    assert SECRET not in result.stderr


# -- 5. parallel connections (zoo pull -c N): the same guarantees per connection ---------------------

BIG = synthetic("rel-net-big", 6 * MIB + 99, seed=14)


@pytest.fixture
def big_mirrors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    use_models(monkeypatch, tmp_path / "manifests", BIG)
    monkeypatch.setenv("ZOO_LOW_SPEED_TIME", "1")
    monkeypatch.setenv("ZOO_LOW_SPEED_LIMIT", "1000")
    with Mirror(BIG.files()) as a, Mirror(BIG.files()) as b:
        monkeypatch.setenv("ZOO_MIRROR", f"{a.url},{b.url}")
        yield a, b


def test_pull_with_connections_uses_ranges(big_mirrors: tuple[Mirror, Mirror], isolated_env: Path) -> None:
    a, b = big_mirrors
    result = zoo("pull", "-c", "4", "--json", BIG.model_id)
    assert result.exit_code == 0, result.stderr
    [item] = json.loads(result.stdout)
    assert Path(item["path"]).read_bytes() == BIG.data
    asked = [r.range for r in a.gets(BIG.path)]
    assert len(asked) == 7 and all(r and r.startswith("bytes=") and r[-1] != "-" for r in asked)
    assert not b.gets()
    assert assert_cache_clean(isolated_env) == 1


def test_stalled_connection_ends_the_parallel_attempt_within_the_window(
    big_mirrors: tuple[Mirror, Mirror], isolated_env: Path
) -> None:
    a, b = big_mirrors
    a.inject(BIG.path, Fault(), Fault(stall=60, stall_at=1000), forever=True)  # piece 0, then every GET stalls
    started = time.monotonic()
    result = zoo("pull", "-c", "4", "--json", BIG.model_id)
    took = time.monotonic() - started
    assert result.exit_code == 0, result.stderr
    assert "too slow" in result.stderr and "trying the next source" in result.stderr
    assert took < 8, f"took {took:.1f} s"
    [item] = json.loads(result.stdout)
    assert Path(item["path"]).read_bytes() == BIG.data
    assert b.gets() and not any(r.range and r.range.startswith("bytes=0-") for r in b.gets())  # piece 0 was kept
    assert assert_cache_clean(isolated_env) == 1

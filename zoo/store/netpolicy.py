"""The rules a download follows, as pure functions: settings from the environment, Retry-After, redirects.

Nothing here touches the network, except resolve_host() (getaddrinfo), which
the redirect rules take as a parameter so that tests can decide what a name
resolves to.
"""

from __future__ import annotations

import ipaddress
import math
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC
from urllib.parse import urlsplit

from zoo.errors import ZooError
from zoo.printable import shown

DEFAULT_TIMEOUT = (10.0, 60.0)  # (connect, read) seconds; ZOO_TIMEOUT sets both
DEFAULT_RETRIES = 4  # attempts per source; ZOO_RETRIES
DEFAULT_BACKOFF = 0.5  # seconds before the first retry, doubled each time; ZOO_RETRY_BACKOFF
DEFAULT_SPEED_LIMIT = 1024.0  # bytes/s; ZOO_LOW_SPEED_LIMIT (0: no limit) ...
DEFAULT_SPEED_TIME = 30.0  # ... averaged over this many seconds; ZOO_LOW_SPEED_TIME
MAX_WAIT = 60.0  # cap on Retry-After and on backoff
MAX_SECONDS = 86400.0  # a day: larger timeouts overflow socket timeouts and mean "forever" anyway
MAX_RETRIES = 100

# Where a public source must not send zoo: the host's own services, the LAN, cloud metadata (169.254.169.254).
# Each kind is its own trust zone: a loopback mirror may redirect within loopback, a LAN mirror within the LAN,
# but neither into link-local, where cloud metadata services answer.
NETWORK_KINDS: dict[str, tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]] = {
    "loopback": tuple(ipaddress.ip_network(n) for n in ("127.0.0.0/8", "0.0.0.0/8", "::1/128", "::/128")),
    "link-local": tuple(ipaddress.ip_network(n) for n in ("169.254.0.0/16", "fe80::/10")),
    "private": tuple(ipaddress.ip_network(n) for n in (
        "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")),
}
WEB_SCHEMES = ("http", "https")

Resolver = Callable[[str], Sequence[str]]  # host -> its IP addresses


@dataclass(frozen=True, slots=True)
class Settings:
    """How patient a download is; from_env() reads ZOO_TIMEOUT, ZOO_RETRIES, ZOO_RETRY_BACKOFF, ZOO_LOW_SPEED_*."""

    timeout: tuple[float, float] = DEFAULT_TIMEOUT
    retries: int = DEFAULT_RETRIES
    backoff: float = DEFAULT_BACKOFF
    speed_limit: float = DEFAULT_SPEED_LIMIT
    speed_time: float = DEFAULT_SPEED_TIME

    @classmethod
    def from_env(cls) -> Settings:
        """Raises ZooError (exit 2) naming the variable for NaN, inf, negative or non-numeric values."""
        timeout = env_number("ZOO_TIMEOUT", low=0.001)
        retries = env_number("ZOO_RETRIES", high=MAX_RETRIES)
        if retries is not None and not retries.is_integer():
            raise _bad("ZOO_RETRIES", os.environ["ZOO_RETRIES"], "a whole number of attempts")
        backoff = env_number("ZOO_RETRY_BACKOFF", high=MAX_WAIT)
        limit = env_number("ZOO_LOW_SPEED_LIMIT", high=1e12)
        window = env_number("ZOO_LOW_SPEED_TIME", low=0.01)
        return cls(
            timeout=DEFAULT_TIMEOUT if timeout is None else (timeout, timeout),
            retries=DEFAULT_RETRIES if retries is None else max(1, int(retries)),
            backoff=DEFAULT_BACKOFF if backoff is None else backoff,
            speed_limit=DEFAULT_SPEED_LIMIT if limit is None else limit,
            speed_time=DEFAULT_SPEED_TIME if window is None else window,
        )


def env_number(name: str, *, low: float = 0.0, high: float = MAX_SECONDS) -> float | None:
    """A finite number in [low, high] from the environment variable `name`; None when unset or empty."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise _bad(name, raw, f"a number between {low:g} and {high:g}") from None
    if not math.isfinite(value) or not low <= value <= high:  # float() accepts "nan" and "inf"
        raise _bad(name, raw, f"a number between {low:g} and {high:g}")
    return value


def _bad(name: str, raw: str, want: str) -> ZooError:
    return ZooError(f"{name} must be {want}, got {shown(raw)!r}", hint=f"set {name} to {want}, or unset it")


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait for a Retry-After header (delay-seconds or an HTTP date), within [0, MAX_WAIT].

    None (use the backoff) when absent or unreadable; `now` is time.time(), for dates.
    """
    if value is None:
        return None
    text = value.strip()
    seconds: float | None
    try:
        seconds = float(text)
    except ValueError:
        seconds = _seconds_until(text, now)
    if seconds is None or math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), MAX_WAIT)  # inf -> MAX_WAIT, a past date or negative -> 0


def _seconds_until(http_date: str, now: float) -> float | None:
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(http_date)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; "-0000" parses as naive

        when = when.replace(tzinfo=UTC)
    try:
        return when.timestamp() - now
    except (OverflowError, OSError, ValueError):
        return None


def address_kind(address: str) -> str | None:
    """"loopback", "link-local" or "private" for such an IP address; None for a public one (or not an IP)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id (fe80::1%eth0)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    return next((kind for kind, nets in NETWORK_KINDS.items() if any(ip in net for net in nets)), None)


def resolve_host(host: str) -> tuple[str, ...]:
    """The addresses `host` stands for: itself when it is an IP literal, else what getaddrinfo says."""
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
        return (host,)
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return ()  # unresolvable: connecting will fail anyway, with its own message
    return tuple(dict.fromkeys(str(info[4][0]) for info in infos))


def host_kinds(host: str, resolve: Resolver = resolve_host) -> frozenset[str]:
    """The non-public kinds of network `host` is in, or resolves into (empty: public)."""
    name = host.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return frozenset({"loopback"})
    return frozenset(kind for a in resolve(host) if (kind := address_kind(a)) is not None)


def source_kinds(url: str, resolve: Resolver = resolve_host) -> frozenset[str]:
    """The networks a source URL points into: its redirects may stay there (a LAN or loopback mirror)."""
    return host_kinds(urlsplit(url).hostname or "", resolve)


def redirect_refusal(target: str, *, source: frozenset[str], resolve: Resolver = resolve_host) -> str | None:
    """Why a redirect to `target` must not be followed, or None to follow it.

    `source` is source_kinds() of the URL zoo was given. Any source may redirect to
    http(s) on the public internet; into a loopback, link-local or private network
    only a source that is itself in that kind of network.
    """
    try:
        parts = urlsplit(target)
        host = parts.hostname or ""
    except ValueError as exc:  # a bracketed host that is no IPv6 address, an unclosed bracket
        return f"refused a redirect to {shown(target)}: not a valid URL ({exc})"
    if parts.scheme.lower() not in WEB_SCHEMES:
        return f"refused a redirect to {shown(target)}: only http:// and https:// redirects are followed"
    foreign = sorted(host_kinds(host, resolve) - source)
    if foreign:
        where = "a public source" if not source else f"a {'/'.join(sorted(source))} source"
        return (f"refused a redirect to {shown(target)}: {shown(host)} is a {'/'.join(foreign)} address, "
                f"and {where} may not send zoo there")
    return None

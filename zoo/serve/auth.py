"""Who may call the server: loopback by default; any other address needs a bearer token or --no-auth."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from dataclasses import dataclass

from zoo.errors import ZooError

# Probes (Kubernetes, load balancers) carry no token; these say only whether the server is up.
OPEN_PATHS = frozenset({"/v2/health/live", "/v2/health/ready"})


@dataclass(frozen=True, slots=True)
class Access:
    """The decided policy: the token to require (None: none) and the start-up line that says so."""

    token: str | None
    notice: str


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def decide(host: str, token: str | None, *, no_auth: bool) -> Access:
    """The access policy for binding `host`; ZooError when a non-loopback bind has neither token nor --no-auth."""
    if token is not None and not token.strip():
        raise ZooError("the token is empty", hint="pass a real secret with --token or ZOO_SERVE_TOKEN")
    if token and not all("!" <= c <= "~" for c in token):  # what an HTTP header carries as it is
        raise ZooError("the token holds characters other than visible ASCII, which no client sends as they are "
                       "in an Authorization header", hint="make one with: python -c 'import secrets; "
                       "print(secrets.token_urlsafe(32))'")
    if token and no_auth:
        raise ZooError("--token and --no-auth contradict each other", hint="pass one of them")
    if token:
        return Access(token, f"auth: every request but {', '.join(sorted(OPEN_PATHS))} needs "
                             "`Authorization: Bearer <token>`")
    if is_loopback(host):
        return Access(None, f"auth: none; {host} is loopback, so only this machine can connect")
    if no_auth:
        return Access(None, f"auth: NONE (--no-auth): anyone who can reach {host} can run models here")
    raise ZooError(f"binding {host} would let other machines call the server, and no token is set",
                   hint="pass --token SECRET (or set ZOO_SERVE_TOKEN), or --no-auth to serve without one; "
                        "the default --host 127.0.0.1 needs neither")


def token_matches(header: str | None, token: str) -> bool:
    """Whether an Authorization header carries the token, compared in constant time.

    Both sides are hashed first, so the comparison takes the same time whatever the
    lengths (hmac.compare_digest alone returns early on a length mismatch).
    """
    if not header or not header.startswith("Bearer "):
        return False
    # The header's bytes as they came (the ASGI server decoded them as latin-1); the token is ASCII (decide()).
    given = hashlib.sha256(header[len("Bearer "):].strip().encode("latin-1", "replace")).digest()
    return hmac.compare_digest(given, hashlib.sha256(token.encode("ascii")).digest())

"""Registry authentication: challenges, the bearer-token flow and basic auth.

A registry answers 401 with ``WWW-Authenticate: Bearer realm="https://auth.example/token",
service="registry.example",scope="repository:app:pull"`` (Docker Hub, GHCR, the distribution
registry's ``auth: token``) or ``Basic realm="..."`` (``auth: htpasswd``). For bearer, the
client fetches ``GET <realm>?service=<service>&scope=<scope>`` — with the user's credentials
as basic auth when it has any, anonymously otherwise — and sends the ``token`` (or
``access_token``) it gets back as ``Authorization: Bearer``. For basic it sends the
credentials directly.

Credentials never appear in logs, events or error messages: :class:`Credentials` hides the
secret in its ``repr``.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field

_PARAM = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


@dataclass(frozen=True)
class Credentials:
    username: str
    secret: str = field(repr=False)     # a password or an identity token

    def basic_header(self) -> str:
        raw = f"{self.username}:{self.secret}".encode()
        return "Basic " + base64.b64encode(raw).decode()


@dataclass(frozen=True)
class Challenge:
    scheme: str                    # "bearer" or "basic" (lower case)
    params: dict[str, str]

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")


def parse_challenge(header: str) -> Challenge | None:
    """The first challenge of a ``WWW-Authenticate`` header; None if there is none we know.

    >>> parse_challenge('Bearer realm="https://a/token",service="r",scope="repository:x:pull"')
    Challenge(scheme='bearer', params={'realm': 'https://a/token', 'service': 'r', \
'scope': 'repository:x:pull'})
    """
    scheme, _, rest = header.strip().partition(" ")
    scheme = scheme.lower()
    if scheme not in ("bearer", "basic"):
        return None
    params = {m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3))
              .replace('\\"', '"') for m in _PARAM.finditer(rest)}
    return Challenge(scheme, params)


def token_params(ch: Challenge, scope: str) -> dict[str, str]:
    """Query parameters of the token request for ``scope`` (the challenge's own scope, if
    any, is replaced: a push needs ``pull,push`` where the 401 may have named ``pull``)."""
    out = {}
    if ch.params.get("service"):
        out["service"] = ch.params["service"]
    if scope:
        out["scope"] = scope
    return out


def token_from_response(body: object) -> str | None:
    """The token of a token server's JSON answer (``token`` or OAuth2's ``access_token``)."""
    if not isinstance(body, dict):
        return None
    tok = body.get("token") or body.get("access_token")
    return tok if isinstance(tok, str) and tok else None

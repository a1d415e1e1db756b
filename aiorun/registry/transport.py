"""One registry on the wire: :class:`RegistryClient`.

Transport rules, as Docker's:

* HTTPS with the system CAs, plus a per-registry CA directory
  ``<certs_dir>/<host[:port]>/*.crt`` (Docker's ``/etc/docker/certs.d`` layout; aiorun's
  default is ``/etc/aiorun/certs.d``, and ``/etc/docker/certs.d`` is read too;
  ``AIORUN_REGISTRY_CERTS_DIR`` — one directory or a ``:``-separated list — replaces both);
* plain HTTP only for insecure registries: loopback ones by default, plus those listed in
  ``AIORUN_INSECURE_REGISTRIES`` (Docker's ``insecure-registries``: ``host[:port]`` entries
  or CIDRs, comma-separated). A registry that has a CA directory is spoken to over TLS even
  when it is insecure by default (loopback): configuring its CA is asking for TLS;
* on a 401 the client answers the challenge (:mod:`.auth`) and retries once; a bearer token
  is cached per scope for the client's lifetime.

Errors name the fix: unauthorized → "run `aiorun login <registry>`"; TLS failures → configure
the CA or mark the registry insecure; unreachable → the registry's address. Credentials never
appear in messages.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import ssl
from pathlib import Path
from typing import Any

import httpx

from aiorun.errors import AiorunError, InvalidArgument, NotFound
from aiorun.registry.auth import (Challenge, Credentials, parse_challenge, token_from_response,
                                  token_params)
from aiorun.registry.remote import is_loopback, registry_hostname

log = logging.getLogger("aiorun.registry")

CERTS_DIRS = (Path("/etc/aiorun/certs.d"), Path("/etc/docker/certs.d"))
#: Replaces :data:`CERTS_DIRS` (``os.pathsep``-separated): tests and non-root daemons.
CERTS_DIR_ENV = "AIORUN_REGISTRY_CERTS_DIR"
#: Docker's ``insecure-registries``: plain HTTP allowed (comma-separated host[:port]/CIDR).
INSECURE_ENV = "AIORUN_INSECURE_REGISTRIES"
#: Connect/read timeouts (seconds); whole downloads are not bounded, only stalls.
TIMEOUT = httpx.Timeout(30.0, connect=10.0)


class RegistryUnauthorized(AiorunError):
    """The registry refused the credentials (or their absence)."""
    status = 401


class RegistryUnavailable(AiorunError):
    """The registry cannot be reached (network, TLS)."""
    status = 502


#: Set (to anything but "" or "0") in the daemon's environment: only loopback registries may
#: be contacted — an air-gapped host's guard, and the test suite's proof that no test ever
#: sends traffic (not even a DNS lookup) off the machine.
LOOPBACK_ONLY_ENV = "AIORUN_REGISTRY_LOOPBACK_ONLY"


def check_allowed(registry: str) -> None:
    """Refuse a non-loopback registry when :data:`LOOPBACK_ONLY_ENV` is set. The test is on
    the name alone (no lookup): a name that resolves to 127.0.0.1 is still refused."""
    if os.environ.get(LOOPBACK_ONLY_ENV, "") not in ("", "0") and not is_loopback(registry):
        raise RegistryUnavailable(f"cannot reach the registry {registry}: only loopback "
                                  f"registries are allowed here ({LOOPBACK_ONLY_ENV} is set)")


def certs_dirs() -> tuple[Path, ...]:
    """Where per-registry CA directories are looked for (:data:`CERTS_DIR_ENV` or the
    defaults)."""
    value = os.environ.get(CERTS_DIR_ENV, "")
    if value:
        return tuple(Path(p) for p in value.split(os.pathsep) if p)
    return CERTS_DIRS


def registry_cas(registry: str, dirs: tuple[Path, ...]) -> list[Path]:
    """The ``*.crt`` files of ``registry``'s CA directories (Docker's ``certs.d`` layout)."""
    out: list[Path] = []
    for d in dirs:
        try:
            out += sorted((d / registry).glob("*.crt"))
        except OSError:        # an unreadable directory: as if absent (logged by the caller)
            log.warning("cannot read the CA directory %s", d / registry)
    return out


def is_insecure(registry: str, listed: str | None = None) -> bool:
    """Loopback registries, and those of :data:`INSECURE_ENV` (or ``listed``), may be spoken
    to in plain HTTP. An entry is ``host[:port]`` (the port, when given, must match) or a
    CIDR matching the registry's IP address."""
    if is_loopback(registry):
        return True
    value = os.environ.get(INSECURE_ENV, "") if listed is None else listed
    host = registry_hostname(registry)
    for entry in (e.strip() for e in value.split(",")):
        if not entry:
            continue
        if entry in (registry, host):
            return True
        if "/" in entry:
            try:
                if ipaddress.ip_address(host) in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
    return False


class RegistryClient:
    """HTTP to one registry's v2 API. Use as ``async with RegistryClient(...) as rc``.

    ``registry`` is ``host[:port]`` as the user wrote it (``api_host`` for Docker Hub);
    ``credentials`` are used for basic auth and for the token request; ``insecure`` True
    forces plain HTTP, False TLS; None decides by the module's rules (a CA directory → TLS,
    else loopback or listed in :data:`INSECURE_ENV` → plain HTTP, else TLS). ``certs``
    replaces :func:`certs_dirs`."""

    def __init__(self, registry: str, *, credentials: Credentials | None = None,
                 insecure: bool | None = None, certs: tuple[Path, ...] | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        check_allowed(registry)
        self.registry = registry
        self.credentials = credentials
        self.certs_dirs = certs_dirs() if certs is None else certs
        cas = registry_cas(registry, self.certs_dirs)
        if insecure is None:
            insecure = not cas and is_insecure(registry)
        self.insecure = insecure
        scheme = "http" if self.insecure else "https"
        self.base_url = f"{scheme}://{registry}"
        self._tokens: dict[str, str] = {}     # scope → bearer token
        self._basic = False                    # the registry asked for basic auth
        self._http = httpx.AsyncClient(timeout=TIMEOUT, verify=self._ssl_context(cas),
                                       follow_redirects=True, transport=transport)

    def _ssl_context(self, cas: list[Path]) -> ssl.SSLContext | bool:
        if self.insecure:
            return False
        ctx = ssl.create_default_context()
        for ca in cas:
            try:
                ctx.load_verify_locations(cafile=str(ca))
            except (OSError, ssl.SSLError) as exc:
                raise RegistryUnavailable(f"cannot load the CA certificate {ca} for "
                                          f"{self.registry}: {exc}") from None
        return ctx

    @property
    def ca_hint(self) -> str:
        """Where this registry's CA goes (the first CA directory)."""
        return f"{self.certs_dirs[0] if self.certs_dirs else CERTS_DIRS[0]}/{self.registry}/ca.crt"

    async def __aenter__(self) -> "RegistryClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    def url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else self.base_url + path

    # -- requests ----------------------------------------------------------------------------
    async def request(self, method: str, path: str, *, scope: str = "",
                      headers: dict[str, str] | None = None, content: Any = None,
                      stream: bool = False) -> httpx.Response:
        """``method path`` with authentication (retried once after a 401 challenge).

        With ``stream=True`` the body is not read: the caller iterates
        ``response.aiter_bytes()`` and must ``await response.aclose()``. Raises
        :class:`RegistryUnauthorized` when credentials are refused and
        :class:`RegistryUnavailable` when the registry cannot be reached; other statuses are
        returned for the caller to interpret (see :meth:`check`)."""
        for attempt in (1, 2):
            h = dict(headers or {})
            auth = self._auth_header(scope)
            if auth:
                h["Authorization"] = auth
            resp = await self._send(method, path, h, content, stream)
            if resp.status_code != 401 or attempt == 2:
                break
            challenge = parse_challenge(resp.headers.get("www-authenticate", ""))
            await resp.aclose()
            if challenge is None:
                break
            await self._answer(challenge, scope)
        if resp.status_code == 401:
            await resp.aclose()
            who = f" as {self.credentials.username}" if self.credentials else ""
            raise RegistryUnauthorized(
                f"unauthorized: authentication required{who} for {self.registry} "
                f"(run `aiorun login {self.registry}`)")
        return resp

    async def _send(self, method: str, path: str, headers: dict[str, str], content: Any,
                    stream: bool) -> httpx.Response:
        try:
            req = self._http.build_request(method, self.url(path), headers=headers,
                                           content=content)
            resp = await self._http.send(req, stream=stream)
        except httpx.ConnectError as exc:
            if isinstance(exc.__cause__, ssl.SSLError) or "SSL" in str(exc):
                raise RegistryUnavailable(
                    f"TLS handshake with {self.registry} failed ({exc}): install its CA in "
                    f"{self.ca_hint} or list it in {INSECURE_ENV}") from None
            raise RegistryUnavailable(f"cannot reach the registry {self.registry}: "
                                      f"{exc}") from None
        except httpx.TimeoutException:
            raise RegistryUnavailable(f"the registry {self.registry} did not answer in "
                                      "time") from None
        except httpx.TransportError as exc:
            raise RegistryUnavailable(f"connection to the registry {self.registry} failed: "
                                      f"{exc}") from None
        if self.insecure and resp.status_code == 400:
            # Go's TLS server answers plain HTTP with this 400: the registry wants TLS
            await resp.aread()
            if b"HTTP request to an HTTPS server" in resp.content:
                await resp.aclose()
                raise RegistryUnavailable(
                    f"the registry {self.registry} speaks TLS (https) but aiorun used plain "
                    f"HTTP (it is insecure by default here): install its CA in "
                    f"{self.ca_hint} to use TLS")
        return resp

    def _auth_header(self, scope: str) -> str | None:
        tok = self._tokens.get(scope)
        if tok:
            return f"Bearer {tok}"
        if self._basic and self.credentials is not None:
            return self.credentials.basic_header()
        return None

    async def _answer(self, ch: Challenge, scope: str) -> None:
        if ch.scheme == "basic":
            self._basic = True
            return
        if not ch.realm:
            return
        headers = {}
        if self.credentials is not None:
            headers["Authorization"] = self.credentials.basic_header()
        try:
            resp = await self._http.get(ch.realm, params=token_params(ch, scope),
                                        headers=headers)
        except httpx.TransportError as exc:
            raise RegistryUnavailable(f"cannot reach the token server of {self.registry}: "
                                      f"{exc}") from None
        if resp.status_code in (401, 403):
            raise RegistryUnauthorized(
                f"unauthorized: the token server of {self.registry} refused the "
                f"{'credentials' if self.credentials else 'anonymous request'} "
                f"(run `aiorun login {self.registry}`)")
        try:
            token = token_from_response(resp.json())
        except ValueError:
            token = None
        if resp.status_code != 200 or token is None:
            raise RegistryUnavailable(f"the token server of {self.registry} answered "
                                      f"{resp.status_code} without a token")
        self._tokens[scope] = token

    # -- helpers for callers -----------------------------------------------------------------
    async def ping(self) -> None:
        """``GET /v2/``: the registry speaks v2 and (after login) accepts the credentials."""
        resp = await self.request("GET", "/v2/")
        await resp.aclose()
        if resp.status_code != 200:
            raise RegistryUnavailable(f"{self.registry} does not speak the registry v2 API "
                                      f"(GET /v2/ answered {resp.status_code})")

    @staticmethod
    async def check(resp: httpx.Response, what: str) -> httpx.Response:
        """Return ``resp`` if 2xx; else read the registry's error list and raise the matching
        error (NotFound for unknown manifests/blobs/repositories)."""
        if 200 <= resp.status_code < 300:
            return resp
        await resp.aread()
        detail = _error_detail(resp)
        await resp.aclose()
        if resp.status_code == 404:
            raise NotFound(f"{what}: not found{detail}")
        if resp.status_code == 403:
            raise RegistryUnauthorized(f"{what}: denied{detail}")
        if resp.status_code == 400:
            raise InvalidArgument(f"{what}: refused by the registry{detail}")
        raise RegistryUnavailable(f"{what}: the registry answered {resp.status_code}{detail}")


def _error_detail(resp: httpx.Response) -> str:
    """``: CODE message`` of a registry's ``{"errors": [{code, message}]}`` body, if any."""
    try:
        errs = resp.json().get("errors") or []
        first = errs[0]
        return f": {first.get('code', '')} {first.get('message', '')}".rstrip()
    except (ValueError, AttributeError, IndexError, TypeError):
        return ""

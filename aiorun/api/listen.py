"""Where the API listens: ``-H`` addresses as dockerd takes them, and the TLS settings.

* ``unix:///path`` — a unix socket (mode 0660). The daemon's own socket
  (``<run>/aiorun.sock``) is always served; ``-H unix://`` adds others.
* ``tcp://HOST:PORT`` — TCP. Served in the clear only on a loopback address (with a warning:
  anyone on the machine who can connect controls the daemon, as root). Any other address
  needs ``--tlsverify``: mutual TLS, clients must present a certificate signed by
  ``--tlscacert``. ``--tls`` alone (server certificate, clients not verified) is allowed on
  loopback only, for the same reason. The port defaults to 2376 with TLS, else 2375.

Pure apart from reading the certificate files in :func:`server_ssl_context`.
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass

from aiorun.errors import InvalidArgument

__all__ = ["ListenAddress", "TlsSettings", "check_listen", "parse_host", "server_ssl_context"]


@dataclass(frozen=True)
class ListenAddress:
    """One ``-H``: ``kind`` is "unix" (``path``) or "tcp" (``host``, ``port``)."""

    kind: str
    path: str = ""
    host: str = ""
    port: int = 0

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix://{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp://{host}:{self.port}"


@dataclass(frozen=True)
class TlsSettings:
    """``--tls``/``--tlsverify`` and the PEM files (``verify`` implies TLS)."""

    enabled: bool = False
    verify: bool = False
    cacert: str = ""
    cert: str = ""
    key: str = ""


def parse_host(spec: str, tls: bool = False) -> ListenAddress:
    """``unix:///run/x.sock`` / ``tcp://127.0.0.1:2376`` / ``tcp://[::1]:2376``.

    InvalidArgument naming the address otherwise (``fd://`` and ``ssh://`` are not
    served)."""
    scheme, sep, rest = spec.partition("://")
    if not sep:
        raise InvalidArgument(f"invalid -H address {spec!r}: want unix:///PATH or "
                              "tcp://HOST:PORT")
    if scheme == "unix":
        if not rest.startswith("/"):
            raise InvalidArgument(f"invalid -H address {spec!r}: the socket path must be "
                                  "absolute")
        return ListenAddress("unix", path=rest)
    if scheme != "tcp":
        raise InvalidArgument(f"invalid -H address {spec!r}: aiorun serves unix:// and "
                              f"tcp:// only, not {scheme}://")
    hostport = rest.rstrip("/")
    if hostport.startswith("["):
        host, _, tail = hostport[1:].partition("]")
        port_s = tail[1:] if tail.startswith(":") else ""
    else:
        host, _, port_s = hostport.rpartition(":") if ":" in hostport else (hostport, "", "")
    if not port_s:
        port = 2376 if tls else 2375
    elif port_s.isdigit() and 0 < int(port_s) < 65536:
        port = int(port_s)
    else:
        raise InvalidArgument(f"invalid -H address {spec!r}: bad port {port_s!r}")
    return ListenAddress("tcp", host=host or "0.0.0.0", port=port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_listen(addr: ListenAddress, tls: TlsSettings) -> str | None:
    """Refuse a TCP address that would hand the daemon to the network; returns the warning
    to log for one that is allowed but unprotected (None when there is nothing to say)."""
    if addr.kind != "tcp":
        return None
    if tls.verify:
        return None
    if not is_loopback(addr.host):
        raise InvalidArgument(
            f"refusing to serve the API on {addr} without --tlsverify: anyone who can reach "
            "it would control the daemon (as root). Use a loopback address, or --tlsverify "
            "with --tlscacert, --tlscert and --tlskey")
    if tls.enabled:
        return (f"API on {addr} uses TLS without verifying clients (--tls): any local user "
                "can connect; use --tlsverify")
    return (f"API on {addr} is plain TCP without TLS: any local user can connect and control "
            "the daemon (as root); use --tlsverify")


def server_ssl_context(tls: TlsSettings) -> ssl.SSLContext:
    """The server side of ``--tls``/``--tlsverify`` (TLS 1.2 or later, as dockerd)."""
    if not (tls.cert and tls.key):
        raise InvalidArgument("--tls/--tlsverify need --tlscert and --tlskey")
    if tls.verify and not tls.cacert:
        raise InvalidArgument("--tlsverify needs --tlscacert (the CA that signs the client "
                              "certificates)")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(tls.cert, tls.key)
        if tls.verify:
            ctx.load_verify_locations(cafile=tls.cacert)
    except (OSError, ssl.SSLError) as exc:
        raise InvalidArgument(f"cannot load the TLS certificates: {exc}") from None
    ctx.verify_mode = ssl.CERT_REQUIRED if tls.verify else ssl.CERT_NONE
    return ctx

"""A token issuer for tests: the registry's ``auth: token`` flow on loopback.

    issuer = start_token_issuer(tmp_path, users={"alice": "pw"})
    reg = start_registry(tmp_path, extra_config=issuer.registry_config())
    ...
    reg.stop(); issuer.stop()

``GET /token?service=<service>&scope=<scope>[&scope=...]`` with basic credentials answers
``{"token": <JWT>, "access_token": <JWT>, "expires_in": 300}``: an RS256 JWT signed with an
RSA key generated at start, whose self-signed certificate is the registry's
``rootcertbundle``. A known user gets every action the scopes ask for; an anonymous request
gets a token granting nothing (the registry then refuses, as Docker Hub does for private
repositories); wrong credentials get a 401. The header's ``kid`` is the key's libtrust ID,
which is how the distribution registry (2.x) finds the key among its trusted certificates.

Needs the ``cryptography`` package (the test extra).
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

SERVICE = "aiorun-test-registry"
ISSUER = "aiorun-test-issuer"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def libtrust_key_id(public_der: bytes) -> str:
    """libtrust's key ID of a PKIX public key: base32 of the first 240 bits of its sha256,
    in groups of four joined by ``:``."""
    s = base64.b32encode(hashlib.sha256(public_der).digest()[:30]).decode().rstrip("=")
    return ":".join(s[i:i + 4] for i in range(0, len(s), 4))


def parse_scopes(values: list[str]) -> list[dict[str, Any]]:
    """``repository:app:pull,push`` scopes (several per value, space separated) → the JWT's
    ``access`` entries."""
    out = []
    for v in values:
        for s in v.split():
            kind, _, rest = s.partition(":")
            name, _, actions = rest.rpartition(":")
            if kind and name:
                out.append({"type": kind, "name": name,
                            "actions": [a for a in actions.split(",") if a]})
    return out


@dataclass
class TokenIssuer:
    server: ThreadingHTTPServer
    thread: threading.Thread
    cert_path: Path
    users: dict[str, str]
    #: (user or "" for anonymous, scopes) of every token request, for assertions.
    requests: list[tuple[str, list[str]]] = field(default_factory=list)

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/token"

    def registry_config(self) -> dict[str, Any]:
        """``extra_config`` for :func:`aiorun.testing.registry.start_registry`."""
        return {"auth": {"token": {"realm": self.realm, "service": SERVICE, "issuer": ISSUER,
                                   "rootcertbundle": str(self.cert_path)}}}

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


def _make_key_and_cert(directory: Path) -> tuple[rsa.RSAPrivateKey, Path, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    path = directory / "token-issuer.crt"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    return key, path, libtrust_key_id(der)


def _jwt(key: rsa.RSAPrivateKey, kid: str, claims: dict[str, Any]) -> str:
    header = {"typ": "JWT", "alg": "RS256", "kid": kid}
    signing_input = (_b64url(json.dumps(header, separators=(",", ":")).encode()) + "." +
                     _b64url(json.dumps(claims, separators=(",", ":")).encode()))
    sig = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return signing_input + "." + _b64url(sig)


def _basic_user(header: str | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        user, sep, pw = base64.b64decode(header[6:].strip()).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, pw) if sep else None


def start_token_issuer(tmp: Path, users: dict[str, str]) -> TokenIssuer:
    """Serve ``/token`` on a free loopback port (in a thread of the test process)."""
    directory = Path(tmp) / f"token-issuer-{secrets.token_hex(4)}"
    directory.mkdir(parents=True)
    key, cert_path, kid = _make_key_and_cert(directory)
    issuer: TokenIssuer

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:   # keep test output clean
            pass

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path != "/token":
                self._answer(404, {"errors": [{"code": "NOT_FOUND"}]})
                return
            q = parse_qs(url.query)
            scopes = q.get("scope", [])
            creds = _basic_user(self.headers.get("Authorization"))
            if self.headers.get("Authorization") and (
                    creds is None or users.get(creds[0]) != creds[1]):
                issuer.requests.append((creds[0] if creds else "?", scopes))
                self._answer(401, {"errors": [{"code": "UNAUTHORIZED",
                                               "message": "wrong username or password"}]})
                return
            user = creds[0] if creds else ""
            issuer.requests.append((user, scopes))
            now = int(time.time())
            claims = {"iss": ISSUER, "sub": user, "aud": q.get("service", [SERVICE])[0],
                      "exp": now + 300, "nbf": now - 10, "iat": now,
                      "jti": secrets.token_hex(8),
                      "access": parse_scopes(scopes) if user else []}
            tok = _jwt(key, kid, claims)
            self._answer(200, {"token": tok, "access_token": tok, "expires_in": 300})

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="token-issuer", daemon=True)
    issuer = TokenIssuer(server, thread, cert_path, dict(users))
    thread.start()
    return issuer

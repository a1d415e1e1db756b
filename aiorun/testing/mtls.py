"""Test certificates for the API's mutual-TLS listener (dockerd's ``--tlsverify``): a CA, a
server certificate for 127.0.0.1 and a client certificate, as PEM files (``cryptography`` is
a test dependency). Registry tests use :mod:`aiorun.testing.tlscerts`.

::

    certs = make_certs(tmp_path)          # certs.ca, certs.server_cert, certs.client_key, ...
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class CertFiles:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    #: a client certificate signed by another CA (must be refused)
    rogue_cert: Path
    rogue_key: Path


def _name(cn: str) -> Any:
    from cryptography import x509
    from cryptography.x509.oid import NameOID
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _key() -> Any:
    from cryptography.hazmat.primitives.asymmetric import ec
    return ec.generate_private_key(ec.SECP256R1())


def _cert(subject: str, key: Any, issuer: str, issuer_key: Any, *, ca: bool = False,
          server: bool = False) -> Any:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(minutes=5))
         .not_valid_after(now + datetime.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        b = b.add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
    elif server:
        b = b.add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False)
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                            critical=False)
    else:
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                            critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def _write(path: Path, cert: Any = None, key: Any = None) -> Path:
    from cryptography.hazmat.primitives import serialization
    if cert is not None:
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    else:
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
        path.chmod(0o600)
    return path


def make_certs(directory: Path) -> CertFiles:
    """Write ca.pem, server-cert.pem/-key.pem, cert.pem/key.pem (client, the docker CLI's
    names) and rogue-cert.pem/-key.pem into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, rogue_ca_key = _key(), _key()
    ca = _cert("aiorun test CA", ca_key, "aiorun test CA", ca_key, ca=True)
    skey, ckey, rkey = _key(), _key(), _key()
    return CertFiles(
        ca=_write(directory / "ca.pem", cert=ca),
        server_cert=_write(directory / "server-cert.pem",
                           cert=_cert("127.0.0.1", skey, "aiorun test CA", ca_key, server=True)),
        server_key=_write(directory / "server-key.pem", key=skey),
        client_cert=_write(directory / "cert.pem",
                           cert=_cert("client", ckey, "aiorun test CA", ca_key)),
        client_key=_write(directory / "key.pem", key=ckey),
        rogue_cert=_write(directory / "rogue-cert.pem",
                          cert=_cert("rogue", rkey, "rogue CA", rogue_ca_key)),
        rogue_key=_write(directory / "rogue-key.pem", key=rkey))

"""A throw-away certificate authority for tests: a CA and the server and client certificates
it signs (registry TLS tests; :func:`make_certs` for the API's mutual TLS).

    ca = make_ca(tmp_path / "ca")
    server = ca.issue(tmp_path / "srv", "127.0.0.1")     # SAN: IP or DNS name
    server.cert, server.key                              # PEM files for the server
    ca.cert                                              # PEM file a client trusts

EC P-256 keys (fast to make), valid for a day. Needs the ``cryptography`` package (the test
extra).
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class ServerCert:
    cert: Path
    key: Path


@dataclass(frozen=True)
class CA:
    cert: Path
    _key: ec.EllipticCurvePrivateKey
    _name: x509.Name

    def issue(self, directory: Path, host: str, *, client: bool = False,
              files: tuple[str, str] = ("server.crt", "server.key")) -> ServerCert:
        """A server certificate for ``host`` (an IP address or a DNS name; SAN), or with
        ``client`` a client certificate with that common name, in ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        b = (x509.CertificateBuilder()
             .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
             .issuer_name(self._name).public_key(key.public_key())
             .serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(minutes=5))
             .not_valid_after(now + datetime.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True))
        if client:
            b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                                critical=False)
        else:
            try:
                san: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(host))]
            except ValueError:
                san = [x509.DNSName(host)]
            if host == "127.0.0.1":
                san.append(x509.DNSName("localhost"))
            b = (b.add_extension(x509.SubjectAlternativeName(san), critical=False)
                 .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                                critical=False))
        cert = b.sign(self._key, hashes.SHA256())
        out = ServerCert(directory / files[0], directory / files[1])
        out.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        out.key.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                              serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
        out.key.chmod(0o600)
        return out


def make_ca(directory: Path, name: str = "aiorun test CA", filename: str = "ca.crt") -> CA:
    """A self-signed CA; its certificate is ``directory/filename``."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                         crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    path = directory / filename
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return CA(path, key, subject)


@dataclass(frozen=True)
class CertFiles:
    """The files of a mutual-TLS set-up (the docker CLI's names)."""
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    #: a client certificate signed by another CA (must be refused)
    rogue_cert: Path
    rogue_key: Path


def make_certs(directory: Path) -> CertFiles:
    """For the API's mutual-TLS listener (dockerd's ``--tlsverify``): ca.pem,
    server-cert.pem/-key.pem (127.0.0.1), cert.pem/key.pem (client) and
    rogue-cert.pem/-key.pem (a client of another CA) in ``directory``."""
    ca = make_ca(directory, filename="ca.pem")
    server = ca.issue(directory, "127.0.0.1", files=("server-cert.pem", "server-key.pem"))
    client = ca.issue(directory, "client", client=True, files=("cert.pem", "key.pem"))
    rogue_ca = make_ca(directory / "rogue-ca", "rogue CA")
    rogue = rogue_ca.issue(directory, "rogue", client=True,
                           files=("rogue-cert.pem", "rogue-key.pem"))
    return CertFiles(ca.cert, server.cert, server.key, client.cert, client.key, rogue.cert,
                     rogue.key)

"""Registry references and authentication challenges (pure)."""

import pytest

from aiorun.registry.auth import (Credentials, parse_challenge, token_from_response,
                                  token_params)
from aiorun.registry.remote import is_loopback, parse_remote


@pytest.mark.parametrize("ref,registry,repo,reference,api", [
    ("busybox", "docker.io", "library/busybox", "latest", "registry-1.docker.io"),
    ("foo/bar:1", "docker.io", "foo/bar", "1", "registry-1.docker.io"),
    ("docker.io/library/debian:12", "docker.io", "library/debian", "12", "registry-1.docker.io"),
    ("127.0.0.1:5000/app", "127.0.0.1:5000", "app", "latest", "127.0.0.1:5000"),
    ("localhost/a/b:x", "localhost", "a/b", "x", "localhost"),
    ("ghcr.io/o/r@sha256:" + "a" * 64, "ghcr.io", "o/r", "sha256:" + "a" * 64, "ghcr.io"),
])
def test_parse_remote(ref, registry, repo, reference, api):
    r = parse_remote(ref)
    assert (r.registry, r.repository, r.reference, r.api_host) == (registry, repo, reference, api)
    assert r.scope() == f"repository:{repo}:pull"


@pytest.mark.parametrize("host,loop", [("127.0.0.1:5000", True), ("localhost", True),
                                       ("localhost:80", True), ("[::1]:5000", True),
                                       ("ghcr.io", False), ("10.0.0.1:5000", False),
                                       ("127.9.9.9:5000", True), ("LOCALHOST:5000", True),
                                       # names that only look like loopback: not loopback
                                       ("127.0.0.1.nip.io:5000", False),
                                       ("127.example.com", False), ("localhost.evil:1", False),
                                       ("[::2]:5000", False)])
def test_loopback_is_insecure_by_default(host, loop):
    assert is_loopback(host) is loop


@pytest.mark.parametrize("registry,listed,insecure", [
    ("127.0.0.1:5000", "", True),                       # loopback: always
    ("reg.lan:5000", "", False),
    ("reg.lan:5000", "reg.lan:5000", True),
    ("reg.lan:5000", "reg.lan", True),                  # any port of a listed host
    ("reg.lan:5000", "reg.lan:6000", False),
    ("10.1.2.3:5000", "10.0.0.0/8, other:1", True),    # CIDR on an IP literal
    ("10.1.2.3:5000", "192.168.0.0/16", False),
    ("reg.lan:5000", "10.0.0.0/8", False),              # never resolved
    ("[fd00::1]:5000", "fd00::/8", True),
])
def test_insecure_registries(registry, listed, insecure):
    from aiorun.registry.transport import is_insecure
    assert is_insecure(registry, listed) is insecure


def test_certs_dirs_from_the_environment(monkeypatch, tmp_path):
    from aiorun.registry.transport import (CERTS_DIR_ENV, CERTS_DIRS, certs_dirs,
                                           registry_cas)
    monkeypatch.delenv(CERTS_DIR_ENV, raising=False)
    assert certs_dirs() == CERTS_DIRS
    a, b = tmp_path / "a", tmp_path / "b"
    monkeypatch.setenv(CERTS_DIR_ENV, f"{a}:{b}")
    assert certs_dirs() == (a, b)
    (b / "reg:5000").mkdir(parents=True)
    (b / "reg:5000" / "ca.crt").write_text("x")
    (b / "reg:5000" / "client.key").write_text("x")
    assert registry_cas("reg:5000", (a, b)) == [b / "reg:5000" / "ca.crt"]
    assert registry_cas("other:5000", (a, b)) == []


@pytest.mark.parametrize("header,scheme,params", [
    ('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
     'scope="repository:library/busybox:pull"', "bearer",
     {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
      "scope": "repository:library/busybox:pull"}),
    ('Basic realm="Registry Realm"', "basic", {"realm": "Registry Realm"}),
    ('bearer realm=https://a/t,service=s', "bearer", {"realm": "https://a/t", "service": "s"}),
    ('Bearer realm="a \\"q\\"",error="invalid_token"', "bearer",
     {"realm": 'a "q"', "error": "invalid_token"}),
])
def test_parse_challenge(header, scheme, params):
    ch = parse_challenge(header)
    assert ch is not None and ch.scheme == scheme and ch.params == params


@pytest.mark.parametrize("header", ["", "Negotiate abc", "Digest realm=x"])
def test_unknown_challenges(header):
    assert parse_challenge(header) is None


def test_token_request_and_answer():
    ch = parse_challenge('Bearer realm="r",service="svc",scope="repository:a:pull"')
    assert ch is not None
    assert token_params(ch, "repository:a:pull,push") == {"service": "svc",
                                                          "scope": "repository:a:pull,push"}
    assert token_from_response({"token": "t1"}) == "t1"
    assert token_from_response({"access_token": "t2"}) == "t2"
    assert token_from_response({"token": ""}) is None
    assert token_from_response(["x"]) is None


def test_credentials_never_show_their_secret():
    c = Credentials("alice", "s3cret")
    assert "s3cret" not in repr(c) and "s3cret" not in str(c)
    assert c.basic_header() == "Basic YWxpY2U6czNjcmV0"


def test_loopback_only_guard(monkeypatch):
    from aiorun.registry.transport import (LOOPBACK_ONLY_ENV, RegistryUnavailable,
                                           check_allowed)
    monkeypatch.setenv(LOOPBACK_ONLY_ENV, "1")
    check_allowed("127.0.0.1:5000")
    with pytest.raises(RegistryUnavailable, match="only loopback registries"):
        check_allowed("registry-1.docker.io")
    for looks_local in ("127.0.0.1.nip.io:5000", "localhost.example:443", "127.evil"):
        with pytest.raises(RegistryUnavailable, match="only loopback registries"):
            check_allowed(looks_local)
    monkeypatch.setenv(LOOPBACK_ONLY_ENV, "0")
    check_allowed("registry-1.docker.io")


def test_parse_mirrors():
    from aiorun.errors import InvalidArgument
    from aiorun.registry.remote import Mirror, parse_mirrors
    assert parse_mirrors("") == []
    assert parse_mirrors("https://mirror.example, http://127.0.0.1:5000/") == [
        Mirror("mirror.example", False), Mirror("127.0.0.1:5000", True)]
    with pytest.raises(InvalidArgument, match="invalid registry mirror 'mirror.example'"):
        parse_mirrors("mirror.example")

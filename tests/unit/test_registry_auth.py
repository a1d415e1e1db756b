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
                                       ("ghcr.io", False), ("10.0.0.1:5000", False)])
def test_loopback_is_insecure_by_default(host, loop):
    assert is_loopback(host) is loop


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

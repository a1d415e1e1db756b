"""Saved credentials (aiorun's auth.json, Docker's config.json), X-Registry-Auth, the push
cache and compression, the token issuer's helpers, and the CLI's registry verbs staying off
the HTTP client."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import stat
import subprocess
import sys

import pytest

from aiorun.config import Paths
from aiorun.errors import InvalidArgument
from aiorun.registry import credentials as C
from aiorun.registry.auth import Credentials
from aiorun.registry.push import PushCache, compress_layer


@pytest.fixture
def paths(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    p = Paths(root=tmp_path / "root", run=tmp_path / "run")
    p.root.mkdir()
    return p


@pytest.mark.parametrize("server,key", [
    ("", C.DOCKER_HUB_KEY), ("docker.io", C.DOCKER_HUB_KEY),
    ("https://index.docker.io/v1/", C.DOCKER_HUB_KEY), ("registry-1.docker.io", C.DOCKER_HUB_KEY),
    ("127.0.0.1:5000", "127.0.0.1:5000"), ("http://127.0.0.1:5000/", "127.0.0.1:5000"),
    ("https://GHCR.io/v2/", "ghcr.io"),
])
def test_server_key(server, key):
    assert C.server_key(server) == key


def test_save_lookup_remove(paths):
    assert C.lookup(paths, "127.0.0.1:5000") is None
    C.save(paths, "127.0.0.1:5000", Credentials("alice", "pw:with:colons"))
    f = C.auth_file(paths)
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    assert C.lookup(paths, "http://127.0.0.1:5000") == Credentials("alice", "pw:with:colons")
    assert C.lookup(paths, "127.0.0.1:5001") is None
    assert not list(f.parent.glob("*.tmp-*"))
    assert C.remove(paths, "127.0.0.1:5000") is True
    assert C.remove(paths, "127.0.0.1:5000") is False
    assert C.lookup(paths, "127.0.0.1:5000") is None


def test_docker_config_is_read_and_aiorun_wins(paths, tmp_path):
    (tmp_path / "docker").mkdir()
    token = base64.b64encode(b"bob:docker-pw").decode()
    (tmp_path / "docker" / "config.json").write_text(json.dumps({"auths": {
        "https://index.docker.io/v1/": {"auth": token},
        "reg.example:443": {"auth": token}}}))
    assert C.lookup(paths, "docker.io") == Credentials("bob", "docker-pw")
    assert C.lookup(paths, "reg.example:443") == Credentials("bob", "docker-pw")
    C.save(paths, "reg.example:443", Credentials("alice", "mine"))
    assert C.lookup(paths, "reg.example:443") == Credentials("alice", "mine")


def test_unreadable_files_give_no_credentials(paths, tmp_path, caplog):
    C.auth_file(paths).write_text('{"auths": {"h:1": {"auth": "secret-ish')
    assert C.lookup(paths, "h:1") is None
    assert "secret-ish" not in caplog.text


def test_secret_not_in_repr():
    assert "pw" not in repr(Credentials("alice", "pw"))


def test_decode_registry_auth():
    def enc(obj):
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")
    assert C.decode_registry_auth(None) == (None, "")
    assert C.decode_registry_auth(enc({})) == (None, "")
    creds, server = C.decode_registry_auth(enc({"username": "a", "password": "b",
                                                "serveraddress": "h:1"}))
    assert creds == Credentials("a", "b") and server == "h:1"
    with pytest.raises(InvalidArgument, match="X-Registry-Auth"):
        C.decode_registry_auth("%%%not base64")


def test_compression_is_deterministic_and_cached(tmp_path):
    tar = tmp_path / "layer.tar"
    tar.write_bytes(os.urandom(1000) + b"\0" * 200_000)
    a, da, sa = compress_layer(tar, tmp_path)
    b, db, sb = compress_layer(tar, tmp_path)
    assert (da, sa) == (db, sb) and a.read_bytes() == b.read_bytes()
    assert da == "sha256:" + hashlib.sha256(a.read_bytes()).hexdigest()
    assert gzip.decompress(a.read_bytes()) == tar.read_bytes()
    p = Paths(root=tmp_path, run=tmp_path)
    cache = PushCache(p)
    cache.record("d" * 64, da, sa)
    cache.record("d" * 64, da, sa, "r:1", "app")
    again = PushCache(p)
    assert again.blob("d" * 64) == (da, sa)
    assert again.holders("d" * 64, "r:1") == ["app"] and again.holders("d" * 64, "x") == []


def test_token_issuer_helpers():
    pytest.importorskip("cryptography")
    from aiorun.testing.tokenissuer import libtrust_key_id, parse_scopes
    kid = libtrust_key_id(b"any der bytes")
    assert len(kid.split(":")) == 12 and all(len(g) == 4 for g in kid.split(":"))
    assert parse_scopes(["repository:a/b:pull,push repository:c:pull"]) == [
        {"type": "repository", "name": "a/b", "actions": ["pull", "push"]},
        {"type": "repository", "name": "c", "actions": ["pull"]}]


def test_cli_registry_verbs_import_no_http_client():
    code = ("import sys, aiorun.cli.registry; "
            "print([m for m in ('httpx', 'aiorun.registry') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"

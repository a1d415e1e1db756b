"""aiorun.registry.manifest (pure): media types, platform choice, schema 1 refused; and the
pull route's and CLI's small parsers."""

from __future__ import annotations

import base64
import json

import pytest

from aiorun.errors import InvalidArgument, NotFound
from aiorun.images import oci
from aiorun.registry import manifest as M

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
D3 = "sha256:" + "3" * 64


def _manifest(mt: str | None, layer_type: str = oci.MT_DOCKER_LAYER_GZIP,
              config_type: str = oci.MT_DOCKER_CONFIG) -> bytes:
    doc: dict = {"schemaVersion": 2,
                 "config": {"mediaType": config_type, "digest": D1, "size": 10},
                 "layers": [{"mediaType": layer_type, "digest": D2, "size": 20}]}
    if mt:
        doc["mediaType"] = mt
    return json.dumps(doc).encode()


def _index(entries: list[tuple[str, str, str]], mt: str | None = oci.MT_OCI_INDEX) -> bytes:
    doc: dict = {"schemaVersion": 2, "manifests": [
        {"mediaType": oci.MT_DOCKER_MANIFEST, "digest": d, "size": 5,
         "platform": {"os": "linux", "architecture": arch, **({"variant": v} if v else {})}}
        for d, arch, v in entries]}
    if mt:
        doc["mediaType"] = mt
    return json.dumps(doc).encode()


@pytest.mark.parametrize("body, ctype, kind, media_type", [
    (_manifest(oci.MT_DOCKER_MANIFEST), "", M.ImageManifest, oci.MT_DOCKER_MANIFEST),
    (_manifest(oci.MT_OCI_MANIFEST, oci.MT_OCI_LAYER_ZSTD, oci.MT_OCI_CONFIG), "",
     M.ImageManifest, oci.MT_OCI_MANIFEST),
    (_manifest(None, oci.MT_OCI_LAYER), oci.MT_OCI_MANIFEST, M.ImageManifest,
     oci.MT_OCI_MANIFEST),                                   # media type from the header
    (_manifest(None, oci.MT_OCI_LAYER_GZIP), "", M.ImageManifest, oci.MT_OCI_MANIFEST),
    (_index([(D1, "amd64", "")], oci.MT_DOCKER_LIST), "", M.ManifestIndex, oci.MT_DOCKER_LIST),
    (_index([(D1, "amd64", "")], None), "", M.ManifestIndex, oci.MT_OCI_INDEX),
])
def test_parse_media_types(body, ctype, kind, media_type):
    doc = M.parse(body, ctype)
    assert isinstance(doc, kind) and doc.media_type == media_type


def test_layers_and_compression():
    doc = M.parse(_manifest(oci.MT_OCI_MANIFEST, oci.MT_OCI_LAYER_ZSTD, oci.MT_OCI_CONFIG))
    assert isinstance(doc, M.ImageManifest)
    assert doc.config.digest == D1 and doc.layers[0].digest == D2 and doc.layers[0].size == 20
    assert M.compression(doc.layers[0]) == "zstd"
    assert M.compression(M.Descriptor(oci.MT_DOCKER_LAYER, D2, 1)) == "tar"
    assert M.compression(M.Descriptor(oci.MT_DOCKER_LAYER_GZIP, D2, 1)) == "gzip"


@pytest.mark.parametrize("body, ctype, message", [
    (json.dumps({"schemaVersion": 1, "name": "x", "fsLayers": []}).encode(), "",
     "schema 1 is deprecated"),
    (b"{}", M.MT_DOCKER_SCHEMA1_SIGNED, "schema 1 is deprecated"),
    (b"not json", "", "not JSON"),
    (b"[]", "", "not a JSON object"),
    (json.dumps({"schemaVersion": 3}).encode(), "", "unsupported schemaVersion"),
    (_manifest("application/x-other"), "", "unsupported manifest media type"),
    (_manifest(oci.MT_OCI_MANIFEST, "application/x-weird"), "", "unsupported layer media"),
    (_manifest(oci.MT_OCI_MANIFEST, config_type="application/vnd.cncf.helm.config.v1+json"),
     "", "not a container image"),
    (_manifest(oci.MT_DOCKER_MANIFEST).replace(D2.encode(), b"sha512:ab"), "",
     "only sha256"),
    (json.dumps({"schemaVersion": 2, "mediaType": oci.MT_OCI_INDEX}).encode(), "",
     "no manifests"),
])
def test_parse_refuses(body, ctype, message):
    with pytest.raises(InvalidArgument, match=message):
        M.parse(body, ctype)


@pytest.mark.parametrize("want, expected", [
    ("linux/amd64", D1),
    ("linux/arm64", D3),            # exact variant beats none
    ("linux/arm64/v8", D3),
    ("linux/arm/v7", D2),
    ("linux/arm", D2),              # no variant asked: any variant matches
])
def test_index_choice(want, expected):
    idx = M.parse(_index([(D1, "amd64", ""), (D2, "arm", "v7"), (D3, "arm64", "v8")]))
    assert isinstance(idx, M.ManifestIndex)
    plat = M.parse_platform(want)
    assert plat is not None
    assert idx.choose(plat).digest == expected


def test_index_without_the_platform_names_what_is_offered():
    idx = M.parse(_index([(D1, "amd64", ""), (D2, "arm64", "")]))
    assert isinstance(idx, M.ManifestIndex)
    with pytest.raises(NotFound, match=r"linux/s390x.*offers: linux/amd64, linux/arm64"):
        idx.choose(M.Platform("linux", "s390x"))


@pytest.mark.parametrize("spec, expected", [
    ("linux/amd64", M.Platform("linux", "amd64")),
    ("linux/x86_64", M.Platform("linux", "amd64")),
    ("linux/aarch64", M.Platform("linux", "arm64")),
    ("LINUX/ARM64/V8", M.Platform("linux", "arm64", "v8")),
    ("", None),
    (None, None),
])
def test_parse_platform(spec, expected):
    assert M.parse_platform(spec) == expected


@pytest.mark.parametrize("spec", ["windows/amd64", "linux//", "a/b/c/d"])
def test_parse_platform_refuses(spec):
    with pytest.raises(InvalidArgument, match="invalid platform"):
        M.parse_platform(spec)


def test_host_platform_is_linux():
    assert M.host_platform().os == "linux" and M.host_platform().architecture == oci.go_arch()


# ------------------------------------------------------------------ route and CLI parsers

def test_pull_reference_and_split():
    from aiorun.api.routes.pull import pull_reference
    from aiorun.cli.pull import split_reference
    assert pull_reference("busybox", "1") == "busybox:1"
    assert pull_reference("h:5000/x", D1) == f"h:5000/x@{D1}"
    assert pull_reference("busybox", "") == "busybox"
    assert split_reference("h:5000/x") == ("h:5000/x", "latest")
    assert split_reference("h:5000/x:2") == ("h:5000/x", "2")
    assert split_reference(f"x@{D1}") == ("x", D1)


def test_x_registry_auth():
    from aiorun.registry.credentials import decode_registry_auth

    def enc(doc: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")

    assert decode_registry_auth(None) == (None, "")
    assert decode_registry_auth(enc({})) == (None, "")
    creds, server = decode_registry_auth(enc({"username": "alice", "password": "pw",
                                              "serveraddress": "h"}))
    assert creds is not None and (creds.username, creds.secret, server) == ("alice", "pw", "h")
    assert "pw" not in repr(creds)
    creds, _ = decode_registry_auth(enc({"identitytoken": "tok"}))
    assert creds is not None and creds.secret == "tok"
    with pytest.raises(InvalidArgument, match="X-Registry-Auth"):
        decode_registry_auth("%%%")

"""Plain regression tests for the exact inputs the fuzz tests in this directory found."""

from __future__ import annotations

import io
import tarfile

import msgpack
import pytest

from aiorun.api.http import Request
from aiorun.bus import codec
from aiorun.core.templates import TemplateError, render
from aiorun.errors import InvalidArgument
from aiorun.images import layers as L
from aiorun.images.build.dockerfile import DockerfileError, apply_metadata, parse
from aiorun_plugins.storage.copy import CopyDriver


def _tar(*members: tuple[str, dict[str, str]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, pax in members:
            ti = tarfile.TarInfo(name)
            ti.pax_headers = pax
            t.addfile(ti, io.BytesIO(b""))
    return buf.getvalue()


@pytest.mark.parametrize("pax", [
    {"path": "n\x00ul"},                 # ValueError: embedded null byte
    {"GNU.sparse.size": "1e400"},        # ValueError from tarfile's PAX parsing
    {"mtime": "nan"},                    # ValueError: cannot convert NaN
    {"mtime": "inf"},                    # OverflowError
    {"mtime": str(2**70)},               # OverflowError: timestamp out of range
    {"uid": "-5"},                       # OverflowError: uid is less than minimum
    {"gid": str(2**40)},
])
def test_layer_header_values_the_kernel_cannot_take(tmp_path, pax):
    dest = tmp_path / "layer"
    dest.mkdir()
    with pytest.raises(InvalidArgument):
        L.extract_tar(io.BytesIO(_tar(("a", pax))), dest, whiteout=lambda fd, n: None,
                      opaque=lambda fd: None)


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE])
def test_layer_link_with_an_empty_target(tmp_path, kind):
    """A GNU long-link (``K``) header with no data, then a symlink: os.symlink('') raised
    FileNotFoundError."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        ti = tarfile.TarInfo("a")
        ti.type, ti.pax_headers = kind, {"linkpath": ""}
        t.addfile(ti)
    dest = tmp_path / "layer"
    dest.mkdir()
    with pytest.raises(InvalidArgument, match="empty target"):
        L.extract_tar(io.BytesIO(buf.getvalue()), dest, whiteout=lambda fd, n: None,
                      opaque=lambda fd: None)


def test_whiteout_named_directory_then_the_whiteout(tmp_path):
    """``.wh.a/a`` made a directory ``.wh.a``; the whiteout ``.wh.a`` then hit
    IsADirectoryError in the copy driver."""
    raw = _tar(("a", {}), (".wh.a/a", {}), (".wh.a", {}))
    driver = CopyDriver(tmp_path / "home")
    with pytest.raises(InvalidArgument, match="inside a whiteout"):
        driver.apply_layer("f" * 64, io.BytesIO(raw))
    assert list((tmp_path / "home" / "layers").iterdir()) == []


def test_healthcheck_duration_too_large_for_go():
    # checked when parsing (as BuildKit does), before any step runs
    with pytest.raises(DockerfileError, match="line 2: invalid duration"):
        parse("FROM scratch\nHEALTHCHECK --interval=" + "9" * 400 + "h CMD true")


def test_bus_map_key_that_is_a_list():
    """``{[]: 0}`` raised TypeError out of the Decoder (the bus logged a failed
    connection instead of answering with an error message)."""
    dec = codec.Decoder()
    dec.feed(b"\x81\x90\x00")
    with pytest.raises(InvalidArgument, match="malformed msgpack"):
        list(dec)
    assert msgpack.unpackb(b"\x81\x90\x00", strict_map_key=False, use_list=False) == {(): 0}


@pytest.mark.parametrize("src", [
    "{{json json}}",   # a function as an argument is called with no args: TypeError
    "{{len}}",
    '{{"\\x"}}',       # bad escape in a string literal: UnicodeDecodeError
    "{{'\\x'}}",
    "{{'é'}}",         # a character literal of two code points after unescaping: TypeError
])
def test_template_errors_are_template_errors(src):
    with pytest.raises(TemplateError):
        render(src, {})


def test_deeply_nested_json_is_a_bad_request():
    """``[[[[...`` 5000 deep raised RecursionError out of a handler: a 500 and a logged
    failure instead of a 400."""
    req = Request.from_target("POST", "/x?filters=" + "%5B" * 5000, {}, b"[" * 5000)
    with pytest.raises(InvalidArgument, match="invalid JSON body"):
        req.json()
    with pytest.raises(InvalidArgument, match="invalid JSON in query parameter"):
        req.json_arg("filters")

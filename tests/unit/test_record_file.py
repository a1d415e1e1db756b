"""The container record file (records.py): one file with the state embedded, the old
two-file layout still read, and the in-place rewrite of the bind-mounted /etc files."""

from __future__ import annotations

import json

import pytest

from aiorun.core import state as st
from aiorun.engine.containers.records import Container, parse_record, record_bytes, \
    rewrite_in_place

DISK = {"ID": "a" * 64, "Name": "c1", "Created": 1, "Image": "sha256:x", "Config": {},
        "HostConfig": {}, "Path": "true", "Args": []}
STATE = {"status": "running", "pid": 42}


@pytest.mark.parametrize("record, legacy_state, want", [
    # the one-file layout
    (json.dumps({**DISK, "State": STATE}), None, (DISK, STATE, False)),
    # its State wins over a state.json left by a migration cut short
    (json.dumps({**DISK, "State": STATE}), json.dumps({"status": "dead"}),
     (DISK, STATE, False)),
    # the old layout: state in state.json
    (json.dumps(DISK), json.dumps(STATE), (DISK, STATE, True)),
    # the old layout with its state lost: no state (the caller marks it dead)
    (json.dumps(DISK), None, (DISK, None, True)),
])
def test_parse_record(record, legacy_state, want):
    assert parse_record(record, legacy_state) == want


@pytest.mark.parametrize("record, legacy_state", [
    ("{corrupt", None),
    ("[1, 2]", None),
    (json.dumps({**DISK, "State": "running"}), None),
    (json.dumps(DISK), "{corrupt"),
    (json.dumps(DISK), "[]"),
])
def test_parse_record_rejects_corrupt(record, legacy_state):
    with pytest.raises(ValueError):
        parse_record(record, legacy_state)


def test_record_round_trip():
    c = Container(id="b" * 64, name="rt", created_ns=5, image_id="sha256:y",
                  config={"Image": "busybox"}, host_config={"NetworkMode": "none"},
                  path="sh", args=["-c", "true"], driver="overlay", rootfs="/r")
    c.state.to_running(1234)
    disk, state, legacy = parse_record(record_bytes(c.to_disk(), c.state.to_dict()).decode(),
                                       None)
    assert not legacy
    back = Container.from_disk(disk, state)
    assert back.to_disk() == c.to_disk()
    assert back.state.status == st.RUNNING and back.state.pid == 1234


@pytest.mark.parametrize("before, after", [
    (b"", b"127.0.0.1 localhost\n"),
    (b"a much longer old content than the new one\n", b"short\n"),
    (b"short\n", b"a much longer new content than the old one\n"),
    (b"same\n", b""),
])
def test_rewrite_in_place_keeps_the_inode(tmp_path, before, after):
    f = tmp_path / "hosts"
    f.write_bytes(before)
    ino = f.stat().st_ino
    rewrite_in_place(f, after)
    assert f.read_bytes() == after
    assert f.stat().st_ino == ino          # a bind mount of it still sees the new content


def test_rewrite_in_place_creates_a_missing_file(tmp_path):
    rewrite_in_place(tmp_path / "new", b"x\n")
    assert (tmp_path / "new").read_bytes() == b"x\n"

"""The shared time formatter (Go's RFC3339Nano) and the atomic file write."""

from __future__ import annotations

import json
import os
import stat

import pytest

from aiorun.core import atomicfile
from aiorun.core.atomicfile import write_atomic, write_json_atomic
from aiorun.core.timefmt import (ZERO_TIME, now_rfc3339, now_rfc3339nano, rfc3339nano,
                                 rfc3339nano_seconds)

BASE = 1_700_000_000  # 2023-11-14T22:13:20Z


@pytest.mark.parametrize("ns, text", [
    (BASE * 10**9, "2023-11-14T22:13:20Z"),                     # no fraction, no dot
    (BASE * 10**9 + 500_000_000, "2023-11-14T22:13:20.5Z"),     # trailing zeros trimmed
    (BASE * 10**9 + 1, "2023-11-14T22:13:20.000000001Z"),       # leading zeros kept
    (BASE * 10**9 + 123_456_789, "2023-11-14T22:13:20.123456789Z"),
    (BASE * 10**9 + 120_000, "2023-11-14T22:13:20.00012Z"),
    (0, ZERO_TIME),
])
def test_rfc3339nano(ns, text):
    assert rfc3339nano(ns) == text


def test_seconds_and_now():
    assert rfc3339nano_seconds(BASE + 0.25) == "2023-11-14T22:13:20.25Z"
    assert rfc3339nano_seconds(BASE) == "2023-11-14T22:13:20Z"
    now = now_rfc3339nano()
    assert now.endswith("Z") and now[:2] == "20" and "T" in now
    assert len(now_rfc3339()) == len("2023-11-14T22:13:20Z")   # whole seconds


def test_write_atomic_creates_and_replaces(tmp_path):
    p = tmp_path / "f.json"
    write_atomic(p, b"one")
    assert p.read_bytes() == b"one"
    assert stat.S_IMODE(p.stat().st_mode) == 0o644 & ~_umask()
    write_atomic(p, b"two", durable=False)
    assert p.read_bytes() == b"two"
    write_json_atomic(p, {"a": 1}, mode=0o600)
    assert json.loads(p.read_text()) == {"a": 1}
    assert sorted(os.listdir(tmp_path)) == ["f.json"]   # no temp file left behind


def test_write_atomic_new_file_mode(tmp_path):
    p = tmp_path / "secret"
    write_atomic(p, b"x", mode=0o600)
    assert stat.S_IMODE(p.stat().st_mode) == 0o600


def test_write_atomic_failure_keeps_old_content_and_no_temp(tmp_path, monkeypatch):
    p = tmp_path / "f"
    p.write_bytes(b"old")

    def boom(src, dst):
        raise OSError("disk on fire")
    monkeypatch.setattr(atomicfile.os, "replace", boom)
    with pytest.raises(OSError):
        write_atomic(p, b"new")
    assert p.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f"]


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old

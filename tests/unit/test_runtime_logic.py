"""Pure runtime helpers: capabilities, users, signals, framing, mount options, log format."""

from __future__ import annotations

import pytest

from aiorun.errors import InvalidArgument
from aiorun.runtime.api import parse_signal
from aiorun.runtime.caps import CAPS, DOCKER_DEFAULT, effective_set, mask_of
from aiorun.runtime.init import InitError, find_executable
from aiorun.runtime.rootfs import split_options
from aiorun.runtime.proto import FrameDecoder, encode
from aiorun.runtime.logfile import LINE_MAX, render, rfc3339nano
from aiorun.runtime.users import UserError, resolve

PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n" \
         "app:x:1000:1000::/srv/app:/bin/sh\n"
GROUP = "root:x:0:\nnogroup:x:65534:\napp:x:1000:\nwheel:x:10:app,root\n"


def test_default_caps():
    assert effective_set(False, [], [], top=40) == mask_of(DOCKER_DEFAULT)
    assert effective_set(True, [], [], top=40) == (1 << 41) - 1


def test_cap_add_drop():
    m = effective_set(False, ["sys_admin", "CAP_NET_ADMIN"], ["NET_RAW", "cap_chown"], top=40)
    assert m & (1 << CAPS["SYS_ADMIN"]) and m & (1 << CAPS["NET_ADMIN"])
    assert not m & (1 << CAPS["NET_RAW"]) and not m & (1 << CAPS["CHOWN"])
    assert effective_set(False, ["KILL"], ["ALL"], top=40) == 1 << CAPS["KILL"]
    assert effective_set(False, ["ALL"], [], top=40) == (1 << 41) - 1
    with pytest.raises(InvalidArgument):
        effective_set(False, ["NOPE"], [], top=40)


@pytest.mark.parametrize("spec,uid,gid,groups,home", [
    ("", 0, 0, [0, 10], "/root"),
    ("root", 0, 0, [0, 10], "/root"),
    ("nobody", 65534, 65534, [65534], "/home"),
    ("app", 1000, 1000, [1000, 10], "/srv/app"),
    ("1000", 1000, 1000, [1000, 10], "/srv/app"),
    ("4242", 4242, 0, [0], "/"),
    ("4242:4243", 4242, 4243, [4243], "/"),
    ("app:wheel", 1000, 10, [10], "/srv/app"),
    ("nobody:0", 65534, 0, [0], "/home"),
])
def test_users(spec, uid, gid, groups, home):
    u = resolve(spec, PASSWD, GROUP)
    assert (u.uid, u.gid, u.groups, u.home) == (uid, gid, groups, home)


def test_unknown_user_or_group():
    with pytest.raises(UserError, match="unable to find user ghost"):
        resolve("ghost", PASSWD, GROUP)
    with pytest.raises(UserError, match="unable to find group ghosts"):
        resolve("app:ghosts", PASSWD, GROUP)


def test_signals():
    assert parse_signal(15) == 15
    assert parse_signal("15") == 15
    assert parse_signal("TERM") == 15
    assert parse_signal("sigkill") == 9
    with pytest.raises(InvalidArgument):
        parse_signal("NOPE")


def test_frames_split_anywhere():
    data = encode({"a": 1, "d": b"\x00\xff"}) + encode([1, "x"])
    for cut in range(len(data)):
        dec = FrameDecoder()
        got = dec.feed(data[:cut]) + dec.feed(data[cut:])
        assert got == [{"a": 1, "d": b"\x00\xff"}, [1, "x"]]


def test_mount_options():
    from aiorun.runtime import syscalls as sc
    flags, data = split_options(["ro", "nosuid", "size=64m", "rbind", "rprivate", "mode=1777"])
    assert flags == sc.MS_RDONLY | sc.MS_NOSUID
    assert data == "size=64m,mode=1777"


def test_find_executable(tmp_path):
    exe = tmp_path / "tool"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    plain = tmp_path / "plain"
    plain.write_text("x")
    assert find_executable("tool", f"/nonexistent:{tmp_path}") == str(exe)
    with pytest.raises(InitError) as ei:
        find_executable("plain", str(tmp_path))
    assert ei.value.code == 127
    assert str(ei.value) == 'exec: "plain": executable file not found in $PATH'
    with pytest.raises(InitError) as ei:
        find_executable("/no/such", "")
    assert ei.value.code == 127 and "no such file or directory" in str(ei.value)
    with pytest.raises(InitError) as ei:
        find_executable(str(tmp_path), "")
    assert ei.value.code == 126 and str(ei.value).endswith("is a directory")


def test_log_time_format():
    assert rfc3339nano(1_795_910_400_123_456_789) == "2026-11-29T00:00:00.123456789Z"


def test_describe_wait_status():
    from aiorun.runtime.spawner.common import describe as _describe
    assert "signal 9" in _describe(9) and "out of memory" in _describe(9)
    assert _describe(3 << 8) == "setup process exited with status 3"


def test_seccomp_program_shape():
    import struct as _s
    from aiorun.runtime import seccomp
    default = mask_of(DOCKER_DEFAULT)
    prog = seccomp.build(default)
    assert len(prog) % 8 == 0 and len(prog) // 8 < 4096
    ins = [_s.unpack("HBBI", prog[i:i + 8]) for i in range(0, len(prog), 8)]
    assert ins[-1] == (0x06, 0, 0, seccomp.RET_ALLOW)
    denied = seccomp.denied(default)
    assert denied["keyctl"] == 250 and denied["mount"] == 165 and "reboot" in denied
    admin = seccomp.denied(default | (1 << CAPS["SYS_ADMIN"]))
    assert "mount" not in admin and "keyctl" in admin
    assert len(seccomp.build(default | (1 << CAPS["SYS_ADMIN"]))) < len(prog)


def test_json_file_rendering():
    import json
    out, rest = render(b"", b"a\nb\npart", "stdout", "T")
    assert [json.loads(x) for x in out.splitlines()] == [
        {"log": "a\n", "stream": "stdout", "time": "T"},
        {"log": "b\n", "stream": "stdout", "time": "T"}]
    assert rest == b"part"
    out, rest = render(rest, b"ial\n", "stderr", "T")
    assert json.loads(out)["log"] == "partial\n" and rest == b""
    out, rest = render(b"", b"x" * (LINE_MAX * 2 + 5), "stdout", "T")
    assert [len(json.loads(x)["log"]) for x in out.splitlines()] == [LINE_MAX, LINE_MAX]
    assert rest == b"xxxxx"
    out, _ = render(b"", b"\xff\xfe ok\n", "stdout", "T")
    assert json.loads(out)["log"] == "\ufffd\ufffd ok\n"      # invalid UTF-8 replaced


def test_status_pipe_order_independent():
    """C2's "ready" may overtake C1's "pid" (two writers): both must be collected."""
    import os
    from aiorun.runtime.spawner.common import StatusPipe as _Status
    r, w = os.pipe()
    try:
        os.write(w, encode({"ready": True}))
        os.write(w, encode({"pid": 42}))
        st = _Status(r)
        assert st.until({"pid", "ready"}, timeout=2) == {"ready": True, "pid": 42}
        # an error before the pid: keep reading until the pid is known too
        os.write(w, encode({"error": "boom", "code": 127}) + encode({"pid": 43}))
        st2 = _Status(r)
        got = st2.until({"pid"}, timeout=2)
        assert got["error"] == "boom" and got["pid"] == 43
        os.close(w)
        w = -1
        assert _Status(r).until(set(), timeout=2) == {}          # EOF: exec succeeded
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)

"""HostConfig's process and device options → the runtime (aiorun.core.run_options), the
``docker top`` ps-output parser and ``--group-add`` resolution, table-driven."""

from __future__ import annotations

import pytest

from aiorun.core import run_options as ro
from aiorun.engine.containers.top import parse_ps_output
from aiorun.errors import InvalidArgument
from aiorun.runtime.users import UserError, extra_groups


@pytest.mark.parametrize("flag,want", [
    ("nofile=1024", {"Name": "nofile", "Soft": 1024, "Hard": 1024}),
    ("nofile=1024:2048", {"Name": "nofile", "Soft": 1024, "Hard": 2048}),
    ("core=-1", {"Name": "core", "Soft": -1, "Hard": -1}),
    ("nproc=10:-1", {"Name": "nproc", "Soft": 10, "Hard": -1}),
])
def test_parse_ulimit(flag, want):
    assert ro.parse_ulimit(flag) == want


@pytest.mark.parametrize("flag,message", [
    ("nofile", "invalid ulimit argument: nofile"),
    ("nofile=a", "invalid ulimit argument"),
    ("files=1", "invalid ulimit type: files"),
    ("nofile=10:5", "soft limit must be less than or equal to hard limit: 10 > 5"),
])
def test_parse_ulimit_refuses(flag, message):
    with pytest.raises(InvalidArgument, match=message):
        ro.parse_ulimit(flag)


def test_ulimits_of():
    hc = {"Ulimits": [{"Name": "nofile", "Soft": 1, "Hard": 2}]}
    assert ro.ulimits_of(hc) == [["nofile", 1, 2]]
    assert ro.ulimits_of({}) == []


@pytest.mark.parametrize("tmpfs,want", [
    ({"/run": ""}, [{"destination": "/run", "type": "tmpfs", "source": "tmpfs",
                     "options": ["noexec", "nosuid", "nodev"], "readonly": False}]),
    ({"/run": "rw,size=64m,exec"},
     [{"destination": "/run", "type": "tmpfs", "source": "tmpfs",
       "options": ["nosuid", "nodev", "size=64m"], "readonly": False}]),
    ({"/b": "ro,mode=1777", "/a": "suid,dev"},
     [{"destination": "/a", "type": "tmpfs", "source": "tmpfs", "options": ["noexec"],
       "readonly": False},
      {"destination": "/b", "type": "tmpfs", "source": "tmpfs",
       "options": ["noexec", "nosuid", "nodev", "mode=1777"], "readonly": True}]),
])
def test_tmpfs_mounts(tmpfs, want):
    ro.check_tmpfs(tmpfs)
    assert ro.tmpfs_mounts({"Tmpfs": tmpfs}) == want


@pytest.mark.parametrize("opts,want", [
    ([], {"seccomp": "default", "no_new_privileges": False, "unmasked_paths": False}),
    (["seccomp=unconfined"], {"seccomp": "unconfined", "no_new_privileges": False, "unmasked_paths": False}),
    (["seccomp:unconfined"], {"seccomp": "unconfined", "no_new_privileges": False, "unmasked_paths": False}),
    (["no-new-privileges"], {"seccomp": "default", "no_new_privileges": True, "unmasked_paths": False}),
    (["no-new-privileges=true", "seccomp=builtin"],
     {"seccomp": "default", "no_new_privileges": True, "unmasked_paths": False}),
    (['seccomp={"defaultAction": "SCMP_ACT_ALLOW"}'],
     {"seccomp": "profile", "no_new_privileges": False, "unmasked_paths": False}),
    (["label=disable", "apparmor=unconfined", "label:disable"],
     {"seccomp": "default", "no_new_privileges": False, "unmasked_paths": False}),
    (["systempaths=unconfined"],
     {"seccomp": "default", "no_new_privileges": False, "unmasked_paths": True}),
])
def test_security_opts(opts, want):
    assert ro.security_opts(opts) == want
    text = ro.seccomp_profile(opts)
    assert (text is not None) == (want["seccomp"] == "profile")


@pytest.mark.parametrize("flag,want", [
    ("/dev/fuse", {"PathOnHost": "/dev/fuse", "PathInContainer": "/dev/fuse",
                   "CgroupPermissions": "rwm"}),
    ("/dev/fuse:r", {"PathOnHost": "/dev/fuse", "PathInContainer": "/dev/fuse",
                     "CgroupPermissions": "r"}),
    ("/dev/fuse:/dev/f", {"PathOnHost": "/dev/fuse", "PathInContainer": "/dev/f",
                          "CgroupPermissions": "rwm"}),
    ("/dev/fuse:/dev/f:rw", {"PathOnHost": "/dev/fuse", "PathInContainer": "/dev/f",
                             "CgroupPermissions": "rw"}),
])
def test_parse_device(flag, want):
    assert ro.parse_device(flag) == want


@pytest.mark.parametrize("flag,message", [
    ("", "invalid device specification"), ("/a:/b:rw:x", "invalid device specification"),
    ("/a:/b:rx", "invalid device mode: rx"), ("/a:b", "b is not an absolute path"),
    ("/a:/b:rr", "invalid device mode: rr"),
])
def test_parse_device_refuses(flag, message):
    with pytest.raises(InvalidArgument, match=message):
        ro.parse_device(flag)


def test_device_rule_and_init_args():
    assert ro.device_rule("c", 10, 229, "rw") == "c 10:229 rw"
    assert ro.init_args(["sh", "-c", "x"]) == ["/sbin/docker-init", "--", "sh", "-c", "x"]
    assert ro.init_args(["sleep"], pid_host=True) == ["/sbin/docker-init", "-s", "--",
                                                      "sleep"]


@pytest.mark.parametrize("mode,ok", [("", True), ("host", True), ("container:x", False),
                                     ("bogus", False)])
def test_pid_mode(mode, ok):
    if ok:
        ro.check_pid_mode(mode)
    else:
        with pytest.raises(InvalidArgument):
            ro.check_pid_mode(mode)


@pytest.mark.parametrize("requested,image_arch,host,message", [
    ("linux", "amd64", "x86_64", None),
    ("linux/amd64", "amd64", "x86_64", None),
    ("linux/x86_64", "", "x86_64", None),
    ("linux/arm64", "amd64", "x86_64", "does not match the specified platform: wanted "
                                       "linux/arm64, actual: linux/amd64"),
    ("windows/amd64", "amd64", "x86_64", "does not match the specified platform"),
    ("linux/arm64", "arm64", "x86_64", "does not match the host"),
])
def test_platform(requested, image_arch, host, message):
    if message is None:
        ro.check_platform(requested, "linux", image_arch, host, "img")
    else:
        with pytest.raises(InvalidArgument, match=message):
            ro.check_platform(requested, "linux", image_arch, host, "img")


def test_gpus_refused():
    ro.check_device_requests(None)
    with pytest.raises(InvalidArgument, match="--gpus"):
        ro.check_device_requests([{"Count": -1}])


PS = """  PID COMMAND         ARGS
    1 init            /sbin/init splash
  200 sleep           sleep 100 200
  300 sh              sh -c x
"""


@pytest.mark.parametrize("pids,rows", [
    ({200}, [["200", "sleep", "sleep 100 200"]]),
    ({1, 300}, [["1", "init", "/sbin/init splash"], ["300", "sh", "sh -c x"]]),
    (set(), []),
])
def test_parse_ps_output(pids, rows):
    assert parse_ps_output(PS, pids) == {"Titles": ["PID", "COMMAND", "ARGS"],
                                         "Processes": rows}


def test_parse_ps_output_refuses():
    with pytest.raises(InvalidArgument, match="Couldn't find PID field in ps output"):
        parse_ps_output("USER COMMAND\nroot x\n", {1})
    with pytest.raises(InvalidArgument, match="Unexpected pid 'x'"):
        parse_ps_output("PID CMD\nx y\n", {1})


GROUP = "root:x:0:\naudio:x:29:bob\nstaff:x:50:\n"


@pytest.mark.parametrize("names,gids", [
    ([], []), (["audio"], [29]), (["staff", "1234"], [50, 1234]), (["29"], [29]),
])
def test_extra_groups(names, gids):
    assert extra_groups(names, GROUP) == gids


def test_extra_groups_refuses_unknown_names():
    with pytest.raises(UserError, match="unable to find group video"):
        extra_groups(["video"], GROUP)


@pytest.mark.parametrize("hc,unmasked", [
    ({}, False), ({"MaskedPaths": None, "ReadonlyPaths": None}, False),
    ({"MaskedPaths": [], "ReadonlyPaths": []}, True),
    ({"SecurityOpt": ["systempaths=unconfined"]}, True),
])
def test_unmasked_paths(hc, unmasked):
    ro.check_system_paths(hc)
    assert ro.unmasked_paths(hc) is unmasked


@pytest.mark.parametrize("hc,message", [
    ({"MaskedPaths": ["/proc/kcore"], "ReadonlyPaths": []}, "custom lists are not supported"),
    ({"MaskedPaths": [], "ReadonlyPaths": None}, "must both be empty"),
])
def test_system_paths_refused(hc, message):
    with pytest.raises(InvalidArgument, match=message):
        ro.check_system_paths(hc)

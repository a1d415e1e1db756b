"""Create-time validation of the whole container body (aiorun.core.validate)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from aiorun.core import spec
from aiorun.core.validate import (MAX_JSON_DEPTH, MAX_NAME_LENGTH, check_depth, loads_json,
                                  normalized_log_config, parse_log_size, validate_create)
from aiorun.errors import InvalidArgument

#: Bodies captured from the real clients (a socket that logged POST /containers/create):
#: docker CLI 28.2.2 sends a full HostConfig with zero values, docker-py 7.2.0 a sparse one.
CAPTURED = json.loads((Path(__file__).parent / "data" / "docker_create_bodies.json")
                      .read_text())
ACCEPTED = [c for c in CAPTURED if "refused" not in c["client"]]
CLI_DEFAULTS = CAPTURED[0]["body"]


@pytest.mark.parametrize("captured", ACCEPTED, ids=[c["client"][:60] for c in ACCEPTED])
def test_real_client_bodies_pass(captured):
    name = dict(p.split("=", 1) for p in captured["query"].split("&") if p).get("name")
    validate_create(captured["body"], name)
    # and the merge takes them too, storing the default log driver by its name
    s = spec.merge(captured["body"], {"Cmd": ["sh"]}, container_id="c" * 64, ncpu=2)
    assert s.host_config["LogConfig"]["Type"] == "json-file"


def test_cli_log_options_are_what_the_engine_stores():
    body = CAPTURED[1]["body"]
    assert body["HostConfig"]["LogConfig"] == {"Type": "",
                                               "Config": {"max-file": "2", "max-size": "10m"}}
    s = spec.merge(body, {}, container_id="c" * 64, ncpu=2)
    assert s.host_config["LogConfig"] == {"Type": "json-file",
                                          "Config": {"max-file": "2", "max-size": "10m"}}


def test_cli_log_driver_syslog_is_refused():
    with pytest.raises(InvalidArgument,
                       match="^logger: no log driver named 'syslog' is registered$"):
        validate_create(CAPTURED[2]["body"])


OK_BODIES = [
    {},
    {"Image": "busybox", "Cmd": "echo hi", "Entrypoint": None, "Env": None},
    {"Image": "busybox", "Env": ["A=1", "B", "C="], "Labels": {"a": ""}},
    {"HostConfig": {"CgroupParent": "mygroup"}},
    {"HostConfig": {"CgroupParent": "/a/b.slice"}},
    {"HostConfig": {"Memory": "64m", "NanoCpus": "1.5", "PidsLimit": -1}},
    {"HostConfig": {"LogConfig": {"Type": "json-file", "Config": {"max-size": "1.5g"}}}},
    {"HostConfig": {"LogConfig": {"Type": "json-file", "Config": {"max-file": "3",
                                                                 "max-size": "10 MB"}}}},
    {"HostConfig": {"LogConfig": None, "Tmpfs": {}, "Init": False, "Sysctls": None}},
    {"HostConfig": {"IpcMode": "private", "ShmSize": 67108864, "CgroupnsMode": "private",
                    "UsernsMode": "host", "MemorySwappiness": -1, "ConsoleSize": [24, 80]}},
    {"HostConfig": {"SomeFutureField": "", "AnotherOne": 0}},
    {"Healthcheck": None, "Shell": None, "NetworkDisabled": False},
    {"Healthcheck": {"Test": ["NONE"]}},
    {"Healthcheck": {}},
    {"Healthcheck": {"Test": ["CMD-SHELL", "true"], "Interval": 1_000_000_000, "Retries": 2}},
    {"HostConfig": {"Init": True, "Tmpfs": {"/run": "rw,size=64m,exec"}, "ShmSize": 1 << 27,
                    "PidMode": "host", "SecurityOpt": ["seccomp=unconfined",
                                                       "no-new-privileges"],
                    "GroupAdd": ["audio", "1234"], "DeviceRequests": None,
                    "Ulimits": [{"Name": "nofile", "Soft": 1024, "Hard": 2048}],
                    "Devices": [{"PathOnHost": "/dev/fuse", "PathInContainer": "/dev/fuse",
                                 "CgroupPermissions": "rwm"}]}},
    # what inspect shows, sent back (a client recreating a container from its inspect)
    {"HostConfig": copy.deepcopy(spec._HOST_DEFAULTS)},
]


@pytest.mark.parametrize("body", OK_BODIES)
def test_accepted(body):
    validate_create(body)


def _with_host(**fields):
    body = copy.deepcopy(CLI_DEFAULTS)
    body["HostConfig"].update(fields)
    return body


REFUSED = [
    # the body itself
    ([], None, "the create request body must be a JSON object"),
    # names
    ({}, "bad name!", r"^Invalid container name \(bad name!\), only \[a-zA-Z0-9\]"),
    ({}, "a", r"Invalid container name \(a\)"),
    ({}, "x" * (MAX_NAME_LENGTH + 1), f"{MAX_NAME_LENGTH + 1} characters, at most "
                                      f"{MAX_NAME_LENGTH} are allowed"),
    ({}, "ab\x00c", "invalid container name: 'ab\\\\x00c' contains a NUL byte"),
    # NUL anywhere a string goes
    ({"Env": ["A=1", "B=x\x00y"]}, None, r"invalid Env\[1\]: 'B=x\\x00y' contains a NUL"),
    ({"Cmd": ["sh", "-c", "\x00"]}, None, r"invalid Cmd\[2\]"),
    ({"Cmd": "a\x00"}, None, "invalid Cmd: "),
    ({"Entrypoint": ["\x00sh"]}, None, r"invalid Entrypoint\[0\]"),
    ({"WorkingDir": "/w\x00"}, None, "invalid WorkingDir"),
    ({"User": "root\x00"}, None, "invalid User"),
    ({"Hostname": "h\x00"}, None, "invalid Hostname"),
    ({"Image": "busybox\x00"}, None, "invalid Image"),
    ({"Labels": {"k": "v\x00"}}, None, "invalid Labels.k"),
    ({"Labels": {"k\x00": "v"}}, None, "invalid key in Labels"),
    (_with_host(Binds=["/a:/b\x00"]), None, r"invalid HostConfig.Binds\[0\]"),
    (_with_host(Dns=["1.1.1.1\x00"]), None, r"invalid HostConfig.Dns\[0\]"),
    (_with_host(Mounts=[{"Type": "bind", "Source": "/x\x00", "Target": "/y"}]), None,
     r"invalid HostConfig.Mounts\[0\].Source"),
    # field types
    ({"Env": {"A": "1"}}, None, "^invalid Env: expected an array of strings, got an object$"),
    ({"Env": "A=1"}, None, "invalid Env: expected an array of strings, got a string"),
    ({"Env": ["A=1", 2]}, None, "invalid Env: expected an array of strings"),
    ({"Cmd": {"a": 1}}, None, "invalid Cmd: expected a string or an array of strings"),
    ({"Entrypoint": 5}, None, "invalid Entrypoint: expected a string or an array"),
    ({"Labels": ["a=b"]}, None, "invalid Labels: expected an object of strings, got an array"),
    ({"Labels": {"a": 1}}, None, "invalid Labels: expected an object of strings"),
    ({"Tty": "yes"}, None, "invalid Tty: expected a boolean, got a string"),
    ({"StopTimeout": "10"}, None, "invalid StopTimeout: expected an integer"),
    ({"StopTimeout": True}, None, "invalid StopTimeout: expected an integer, got a boolean"),
    ({"Image": ["busybox"]}, None, "invalid Image: expected a string, got an array"),
    ({"HostConfig": []}, None, "invalid HostConfig: expected an object, got an array"),
    ({"HostConfig": {"Binds": "/a:/b"}}, None, "invalid HostConfig.Binds: expected an array"),
    ({"HostConfig": {"Memory": True}}, None, "invalid HostConfig.Memory: expected an integer "
                                             "or a size string, got a boolean"),
    ({"HostConfig": {"CpuShares": "2"}}, None, "invalid HostConfig.CpuShares: expected an "
                                               "integer, got a string"),
    ({"HostConfig": {"Mounts": ["/a:/b"]}}, None, "invalid HostConfig.Mounts: expected an "
                                                  "array of objects"),
    ({"HostConfig": {"RestartPolicy": "always"}}, None, "invalid HostConfig.RestartPolicy"),
    ({"HostConfig": {"PortBindings": ["80:80"]}}, None, "invalid HostConfig.PortBindings"),
    # Env entries (the docker CLI's wording)
    ({"Env": ["=x"]}, None, "^invalid environment variable: =x$"),
    ({"Env": [""]}, None, "^invalid environment variable: $"),
    # cgroup parent
    (_with_host(CgroupParent="/"), None, "invalid cgroup parent: '/': it must name a cgroup"),
    (_with_host(CgroupParent="//./"), None, "invalid cgroup parent: '//./'"),
    (_with_host(CgroupParent="../x"), None, "invalid cgroup parent: '../x': '..' is not"),
    (_with_host(CgroupParent="/a/../../x"), None, "invalid cgroup parent"),
    # log config (moby's wording)
    (_with_host(LogConfig={"Type": "syslog", "Config": {}}), None,
     "^logger: no log driver named 'syslog' is registered$"),
    (_with_host(LogConfig={"Type": "local"}), None, "no log driver named 'local'"),
    (_with_host(LogConfig={"Type": "none"}), None, "no log driver named 'none'"),
    (_with_host(LogConfig={"Type": "", "Config": {"compress": "true"}}), None,
     "^unknown log opt 'compress' for json-file log driver$"),
    (_with_host(LogConfig={"Type": "json-file", "Config": {"max-size": "lots"}}), None,
     "^invalid size: 'lots'$"),
    (_with_host(LogConfig={"Config": {"max-size": "0"}}), None,
     "^max-size must be a positive number$"),
    (_with_host(LogConfig={"Config": {"max-file": "two"}}), None,
     "^invalid max-file: 'two' is not an integer$"),
    (_with_host(LogConfig={"Config": {"max-file": "0"}}), None,
     "^max-file cannot be less than 1$"),
    (_with_host(LogConfig={"Config": {"max-file": 2}}), None,
     "invalid HostConfig.LogConfig.Config: expected an object of strings"),
    (_with_host(LogConfig={"Type": 1}), None, "invalid HostConfig.LogConfig.Type"),
    (_with_host(LogConfig="json-file"), None, "invalid HostConfig.LogConfig: expected an "
                                              "object"),
    # HostConfig features aiorun does not have: a value is refused, not ignored
    # process and device options: implemented, bad values refused in Docker's words
    (_with_host(Init="yes"), None, "invalid HostConfig.Init: expected a boolean"),
    (_with_host(Tmpfs={"t": ""}), None, "mount path must be absolute"),
    (_with_host(Tmpfs={"/t": "size=1m,bogus"}), None, r'invalid tmpfs option \["bogus"\]'),
    (_with_host(SecurityOpt=["seccomp=nope"]), None, "the profile is not valid JSON"),
    (_with_host(SecurityOpt=['seccomp=["SCMP_ACT_ALLOW"]']), None,
     "the profile must be a JSON object"),
    (_with_host(SecurityOpt=["no-new-privileges=false"]), None, "always run with"),
    (_with_host(SecurityOpt=["apparmor=x"]), None, "apparmor is not supported"),
    (_with_host(SecurityOpt=["bogus"]), None, "invalid --security-opt 1"),
    (_with_host(Devices=[{"PathOnHost": "dev/fuse"}]), None, "it must be absolute"),
    (_with_host(Devices=[{"PathOnHost": "/dev/fuse", "CgroupPermissions": "rwx"}]), None,
     "invalid device mode: rwx"),
    (_with_host(Ulimits=[{"Name": "nofiles", "Soft": 1, "Hard": 2}]), None,
     "invalid ulimit type: nofiles"),
    (_with_host(Ulimits=[{"Name": "nofile", "Soft": 3, "Hard": 2}]), None,
     "ulimit soft limit must be less than or equal to hard limit: 3 > 2"),
    (_with_host(PidMode="container:x"), None, "not supported by aiorun"),
    (_with_host(PidMode="bogus"), None, "invalid --pid"),
    (_with_host(ShmSize=-1), None, "SHM size can not be less than 0"),
    (_with_host(GroupAdd=[""]), None, "invalid --group-add"),
    (_with_host(DeviceRequests=[{"Count": -1, "Capabilities": [["gpu"]]}]), None,
     r"--gpus \(HostConfig.DeviceRequests\) is not supported by aiorun"),
    (_with_host(OomScoreAdj=500), None, r"HostConfig.OomScoreAdj is not supported by aiorun "
                                        r"\(got 500\)"),
    (_with_host(IpcMode="host"), None, "HostConfig.IpcMode is not"),
    (_with_host(DnsSearch="example.com"), None, "HostConfig.DnsSearch"),   # not a list
    (_with_host(Dns=["resolver.lan"]), None, "resolver.lan is not an ip address"),
    (_with_host(ExtraHosts=["db:nope"]), None, "invalid IP address in add-host: 'nope'"),
    (_with_host(ExtraHosts=["gw:host-gateway"], NetworkMode="none"), None,
     "network mode none has no host gateway"),
    (_with_host(NetworkMode="container:"), None, "invalid container format"),
    (_with_host(NetworkMode="container:x", Dns=["1.1.1.1"]), None,
     "^conflicting options: dns and the network mode$"),
    (_with_host(NetworkMode="container:x", ExtraHosts=["a:10.0.0.1"]), None,
     "conflicting options: custom host-to-IP mapping and the network mode"),
    (_with_host(NetworkMode="container:x", PortBindings={"80/tcp": [{"HostPort": "80"}]}),
     None, "conflicting options: port publishing and the container type network mode"),
    ({"Hostname": "h", "HostConfig": {"NetworkMode": "container:x"}}, None,
     "conflicting options: hostname and the network mode"),
    ({"HostConfig": {"NetworkMode": "container:x"}, "NetworkingConfig": {"EndpointsConfig": {
        "container:x": {"MacAddress": "02:42:00:00:00:01"}}}}, None,
     "conflicting options: mac-address and the network mode"),
    (_with_host(Links="db:db"), None, "HostConfig.Links"),     # a list of strings
    (_with_host(MemoryReservation=1 << 20), None, "HostConfig.MemoryReservation is not"),
    (_with_host(MemorySwappiness=0), None, "HostConfig.MemorySwappiness is not"),
    (_with_host(VolumesFrom=["other"]), None, "HostConfig.VolumesFrom is not"),
    (_with_host(Sysctls={"net.ipv4.ip_forward": "1"}), None, "HostConfig.Sysctls is not"),
    ({"Healthcheck": {"Test": ["CMD"]}}, None, "the health check command is empty"),
    ({"Healthcheck": {"Test": ["RUN", "x"]}}, None, "unknown type 'RUN'"),
    ({"Healthcheck": {"Test": ["CMD", "true"], "Interval": 10}}, None,
     "^Interval in Healthcheck cannot be less than 1ms$"),
    ({"Healthcheck": {"Test": ["CMD", "true"], "Retries": -1}}, None,
     "^Retries in Healthcheck cannot be negative$"),
    ({"NetworkDisabled": True}, None, "NetworkDisabled is not supported by aiorun"),
    (_with_host(SomeFutureField="x" * 200), None,
     r"HostConfig.SomeFutureField is not supported by aiorun \(got \"x{59}\.\.\.\)$"),
]


@pytest.mark.parametrize("body,name,message", REFUSED,
                         ids=[f"{i}:{r[2][:40]}" for i, r in enumerate(REFUSED)])
def test_refused(body, name, message):
    with pytest.raises(InvalidArgument, match=message) as ei:
        validate_create(body, name)
    assert ei.value.status == 400


def test_depth_limit():
    deep: object = "x"
    for _ in range(MAX_JSON_DEPTH):
        deep = [deep]
    check_depth(deep)                        # exactly at the limit
    with pytest.raises(InvalidArgument, match=f"nested more than {MAX_JSON_DEPTH} levels"):
        check_depth([deep])
    with pytest.raises(InvalidArgument, match="nested more than 3 levels"):
        check_depth({"a": {"b": {"c": {}}}}, limit=3)
    check_depth({"a": {"b": {"c": 1}}}, limit=3)
    with pytest.raises(InvalidArgument, match="nested more than"):
        validate_create({"Labels": {}, "HostConfig": {"x": deep}})


@pytest.mark.parametrize("raw", [b"[" * 100_000 + b"]" * 100_000,
                                 b'{"a":' * 5000 + b"1" + b"}" * 5000,
                                 b"[" * 65 + b"]" * 65])
def test_loads_json_refuses_deep_nesting_with_400(raw):
    with pytest.raises(InvalidArgument, match="nested more than 64 levels") as ei:
        loads_json(raw)
    assert ei.value.status == 400


def test_loads_json():
    assert loads_json(b'{"a": [1, {"b": null}]}') == {"a": [1, {"b": None}]}
    with pytest.raises(InvalidArgument, match="^invalid JSON body: "):
        loads_json(b"{not json")


@pytest.mark.parametrize("value,size", [("10k", 10_000), ("10m", 10_000_000),
                                        ("1g", 10**9), ("1.5m", 1_500_000), ("100", 100),
                                        ("10MB", 10_000_000), ("10 KiB", 10_000)])
def test_parse_log_size_is_dockers_decimal_from_human_size(value, size):
    assert parse_log_size(value) == size


def test_normalized_log_config():
    assert normalized_log_config(None) == {"Type": "json-file", "Config": {}}
    assert normalized_log_config({"Type": "", "Config": None}) == {"Type": "json-file",
                                                                   "Config": {}}
    with pytest.raises(InvalidArgument, match="no log driver named 'gelf'"):
        normalized_log_config({"Type": "gelf"})


def test_rename_and_engine_path_use_the_same_name_rule():
    assert spec.validate_name("/web.1") == "web.1"
    with pytest.raises(InvalidArgument, match="at most 253"):
        spec.validate_name("a" * 254)
    with pytest.raises(InvalidArgument, match="only"):
        spec.validate_name("-bad")

"""Validation of the exec create and the update bodies (aiorun.core.validate): issue 11,
item 7's leftovers. Before, a NUL byte in an exec's Cmd/Env/WorkingDir/User reached the
runtime (a raw ``ValueError('embedded null byte')`` at start), a wrongly typed field was
silently dropped, and an update of a field aiorun cannot change answered 200."""

from __future__ import annotations

import copy

import pytest

from aiorun.core.validate import MAX_JSON_DEPTH, validate_exec, validate_update
from aiorun.errors import InvalidArgument

#: What the docker CLI (v28) sends for ``docker exec -it c sh`` (ExecConfig, zero values).
DOCKER_EXEC = {"User": "", "Privileged": False, "Tty": True, "ConsoleSize": [24, 80],
               "AttachStdin": True, "AttachStderr": True, "AttachStdout": True,
               "Detach": False, "DetachKeys": "", "Env": None, "WorkingDir": "",
               "Cmd": ["sh"]}

#: The shape of the docker CLI's ``docker update --memory 64m c`` body: UpdateConfig marshals
#: every resource field, zero when not set.
DOCKER_UPDATE = {
    "CgroupParent": "", "BlkioWeight": 0, "BlkioWeightDevice": None,
    "BlkioDeviceReadBps": None, "BlkioDeviceWriteBps": None, "BlkioDeviceReadIOps": None,
    "BlkioDeviceWriteIOps": None, "CpuPeriod": 0, "CpuQuota": 0, "CpuRealtimePeriod": 0,
    "CpuRealtimeRuntime": 0, "CpusetCpus": "", "CpusetMems": "", "Devices": None,
    "DeviceCgroupRules": None, "DeviceRequests": None, "KernelMemory": 0,
    "KernelMemoryTCP": 0, "MemoryReservation": 0, "MemorySwap": 0, "MemorySwappiness": None,
    "OomKillDisable": None, "PidsLimit": None, "Ulimits": None, "CpuCount": 0,
    "CpuPercent": 0, "IOMaximumIOps": 0, "IOMaximumBandwidth": 0, "Memory": 67108864,
    "NanoCpus": 0, "CpuShares": 0, "RestartPolicy": {"Name": "", "MaximumRetryCount": 0}}


def nested(depth: int) -> object:
    v: object = "x"
    for _ in range(depth):
        v = [v]
    return v


def with_(base: dict, **changes: object) -> dict:
    body = copy.deepcopy(base)
    body.update(changes)
    return body


# ------------------------------------------------------------------ exec

EXEC_OK = [
    ("docker CLI body", DOCKER_EXEC),
    ("minimal", {"Cmd": ["true"]}),
    ("Cmd as a string", {"Cmd": "ls -l"}),
    ("Env and an absolute WorkingDir", {"Cmd": ["env"], "Env": ["A=1", "B"],
                                        "WorkingDir": "/tmp", "User": "1000:1000"}),
    ("unknown fields are Docker's to ignore", {"Cmd": ["true"], "Future": {"x": 1}}),
]

EXEC_BAD = [
    ("not an object", ["ls"], "the exec request body must be a JSON object"),
    ("no Cmd", {"AttachStdout": True}, "No exec command specified"),
    ("empty Cmd", {"Cmd": []}, "No exec command specified"),
    ("Cmd of empty strings", {"Cmd": [""]}, "No exec command specified"),
    ("NUL in Cmd", {"Cmd": ["echo", "a\x00b"]}, "invalid Cmd[1]: 'a\\x00b' contains a NUL"),
    ("NUL in Env", {"Cmd": ["true"], "Env": ["A=\x00"]},
     "invalid Env[0]: 'A=\\x00' contains a NUL byte"),
    ("NUL in WorkingDir", {"Cmd": ["true"], "WorkingDir": "/t\x00"},
     "invalid WorkingDir: '/t\\x00' contains a NUL byte"),
    ("NUL in User", {"Cmd": ["true"], "User": "root\x00"},
     "invalid User: 'root\\x00' contains a NUL byte"),
    ("Cmd a number", {"Cmd": 5}, "invalid Cmd: expected a string or an array of strings, "
                                 "got a number"),
    ("Cmd with a number", {"Cmd": ["echo", 1]},
     "invalid Cmd: expected a string or an array of strings, got an array"),
    ("Env as an object", {"Cmd": ["true"], "Env": {"A": "1"}},
     "invalid Env: expected an array of strings, got an object"),
    ("Env without a key", {"Cmd": ["true"], "Env": ["=1"]},
     "invalid environment variable: =1"),
    ("Tty a string", {"Cmd": ["true"], "Tty": "yes"},
     "invalid Tty: expected a boolean, got a string"),
    ("Privileged a number", {"Cmd": ["true"], "Privileged": 1},
     "invalid Privileged: expected a boolean, got a number"),
    ("User a number", {"Cmd": ["true"], "User": 0},
     "invalid User: expected a string, got a number"),
    ("ConsoleSize of strings", {"Cmd": ["true"], "ConsoleSize": ["24", "80"]},
     "invalid ConsoleSize: expected an array of integers, got an array"),
    ("relative WorkingDir", {"Cmd": ["true"], "WorkingDir": "tmp"},
     "the working directory 'tmp' is invalid, it needs to be an absolute path"),
    ("too deep", {"Cmd": ["true"], "x": nested(MAX_JSON_DEPTH + 1)},
     f"invalid JSON body: nested more than {MAX_JSON_DEPTH} levels deep"),
]


@pytest.mark.parametrize("body", [b for _, b in EXEC_OK], ids=[n for n, _ in EXEC_OK])
def test_exec_bodies_accepted(body):
    validate_exec(body)


@pytest.mark.parametrize("body,message", [(b, m) for _, b, m in EXEC_BAD],
                         ids=[n for n, _, _ in EXEC_BAD])
def test_exec_bodies_refused(body, message):
    with pytest.raises(InvalidArgument) as exc:
        validate_exec(body)
    assert exc.value.message.startswith(message), exc.value.message
    assert exc.value.status == 400


# ------------------------------------------------------------------ update

UPDATE_OK = [
    ("docker CLI body", DOCKER_UPDATE),
    ("aiorun CLI body", {"Memory": 67108864, "NanoCpus": 500000000, "PidsLimit": 50,
                         "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3}}),
    ("memory as a size string", {"Memory": "64m"}),
    ("empty", {}),
    ("swappiness as aiorun has it", {"MemorySwappiness": -1}),
]

UPDATE_BAD = [
    ("not an object", "64m", "the update body must be a JSON object"),
    ("Memory a boolean", {"Memory": True},
     "invalid Memory: expected an integer or a size string, got a boolean"),
    ("PidsLimit a string", {"PidsLimit": "10"},
     "invalid PidsLimit: expected an integer, got a string"),
    ("CpuShares a float", {"CpuShares": 1.5}, "invalid CpuShares: expected an integer"),
    ("RestartPolicy a string", {"RestartPolicy": "always"},
     "invalid RestartPolicy: expected an object, got a string"),
    ("RestartPolicy.Name a number", {"RestartPolicy": {"Name": 1}},
     "invalid RestartPolicy.Name: expected a string, got a number"),
    ("RestartPolicy.MaximumRetryCount a string",
     {"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": "3"}},
     "invalid RestartPolicy.MaximumRetryCount: expected an integer, got a string"),
    ("NUL in a size", {"Memory": "64m\x00"}, "invalid Memory: '64m\\x00' contains a NUL"),
    ("NUL in the policy", {"RestartPolicy": {"Name": "always\x00"}},
     "invalid RestartPolicy.Name: 'always\\x00' contains a NUL byte"),
    ("a cpuset (not implemented)", with_(DOCKER_UPDATE, CpusetCpus="0-1"),
     "updating CpusetCpus is not supported by aiorun (got \"0-1\")"),
    ("a blkio weight (not implemented)", {"BlkioWeight": 500},
     "updating BlkioWeight is not supported by aiorun (got 500)"),
    ("swappiness 0 (a request, not unset)", {"MemorySwappiness": 0},
     "updating MemorySwappiness is not supported by aiorun (got 0)"),
    ("a create-only field", {"Privileged": True},
     "updating Privileged is not supported by aiorun (got true)"),
    ("too deep", {"Ulimits": nested(MAX_JSON_DEPTH + 1)},
     f"invalid JSON body: nested more than {MAX_JSON_DEPTH} levels deep"),
]


@pytest.mark.parametrize("body", [b for _, b in UPDATE_OK], ids=[n for n, _ in UPDATE_OK])
def test_update_bodies_accepted(body):
    validate_update(body)


@pytest.mark.parametrize("body,message", [(b, m) for _, b, m in UPDATE_BAD],
                         ids=[n for n, _, _ in UPDATE_BAD])
def test_update_bodies_refused(body, message):
    with pytest.raises(InvalidArgument) as exc:
        validate_update(body)
    assert exc.value.message.startswith(message), exc.value.message
    assert exc.value.status == 400

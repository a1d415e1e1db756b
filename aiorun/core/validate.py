"""Refuse a bad ``POST /containers/create`` body before anything is created (and a bad exec
create or update body: :func:`validate_exec`, :func:`validate_update`, at the end).

Pure and I/O free. :func:`validate_create` checks the whole Docker create body up front, so
that input the engine would choke on later (a NUL byte reaching ``execve``, Env sent as an
object and silently dropped, a HostConfig feature aiorun does not have) is a 400 naming the
field at create time, never a 500 or a silent no-op at start. :func:`loads_json` and
:func:`check_depth` bound how deeply nested a request body may be.

What is checked:

* the JSON type of every field aiorun reads (``null`` always means "unset", as in Docker);
* no NUL byte in any string, key or value: most of them end up in ``execve``, a path or a
  file the kernel reads, and none has a use for one;
* the container name: Docker's charset, and at most :data:`MAX_NAME_LENGTH` characters;
* Env entries are ``KEY=value`` or ``KEY`` with a non-empty key;
* ``HostConfig.CgroupParent`` is not the root cgroup and does not climb out with ``..``;
* ``HostConfig.LogConfig``: the one driver aiorun has (json-file) and its options;
* Healthcheck (``aiorun.core.health``) and the process/device options of HostConfig
  (``aiorun.core.run_options``: ulimits, shm, tmpfs, pid, security-opt, group-add, devices;
  ``--gpus`` refused);
* every HostConfig field aiorun does not implement (and the top-level NetworkDisabled) is
  refused when it carries a value. The
  docker CLI sends all of them with zero values, so a zero value (``0``, ``""``, ``false``,
  ``[]``, ``{}``, ``null``, or the value that matches what aiorun does anyway, such as
  ``IpcMode: "private"``) is accepted.

Value checks that need the image or the host (memory sizes, CPU range, mounts, ports) stay
in :mod:`aiorun.core.spec`, :mod:`aiorun.core.mounts` and :mod:`aiorun.core.ports`; this
module only makes sure they get values of the right shape.
"""

from __future__ import annotations

import json
import posixpath
import re
from typing import Any, Callable

from aiorun.core import netopts
from aiorun.core import run_options as ro
from aiorun.core.health import check_healthcheck
from aiorun.errors import InvalidArgument

#: Docker's container name rule (moby ``validContainerNamePattern``); a leading "/" is the
#: form Docker shows names in.
NAME_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")

#: Docker sets no limit on a container name. aiorun caps it at the longest DNS name, since
#: the name is served by the embedded DNS and written into other containers' /etc/hosts.
MAX_NAME_LENGTH = 253

#: Deepest nesting accepted in a JSON request body. A create body is at most 5 levels deep
#: (HostConfig.PortBindings["80/tcp"][0]); deeper input only ever serves to exhaust the
#: parser's recursion (a 500 in a naive server).
MAX_JSON_DEPTH = 64

#: The log drivers aiorun implements (the spawner writes Docker's json-file format). An
#: empty Type means the daemon's default, which is json-file.
LOG_DRIVERS = ("json-file",)
LOG_OPTIONS = ("max-size", "max-file")


# --------------------------------------------------------------------------- JSON depth

def check_depth(obj: Any, limit: int = MAX_JSON_DEPTH) -> None:
    """InvalidArgument when ``obj`` nests lists/objects more than ``limit`` levels deep.

    Iterative, so that checking a hostile document cannot itself run out of stack.
    """
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > limit:
            raise InvalidArgument(f"invalid JSON body: nested more than {limit} levels deep")
        stack.extend((child, depth + 1) for child in children)


def loads_json(raw: bytes | str, limit: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` that answers 400 for malformed or too deeply nested input.

    The C decoder raises RecursionError on a few thousand nested brackets before any depth
    check could look at the result; that is a client error, not a server one.
    """
    try:
        obj = json.loads(raw)
    except RecursionError:
        raise InvalidArgument(
            f"invalid JSON body: nested more than {limit} levels deep") from None
    except ValueError as exc:
        raise InvalidArgument(f"invalid JSON body: {exc}") from None
    check_depth(obj, limit)
    return obj


# --------------------------------------------------------------------------- field types

def _json_type(value: Any) -> str:
    """The JSON name of a decoded value's type, for messages."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_str_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


#: (description for the message, predicate) per kind of field. ``None`` passes every kind.
Kind = tuple[str, Callable[[Any], bool]]
STR: Kind = ("a string", lambda v: isinstance(v, str))
BOOL: Kind = ("a boolean", lambda v: isinstance(v, bool))
INT: Kind = ("an integer", _is_int)
INT_OR_STR: Kind = ("an integer or a size string", lambda v: _is_int(v) or isinstance(v, str))
STR_LIST: Kind = ("an array of strings", _is_str_list)
STR_OR_STR_LIST: Kind = ("a string or an array of strings",
                         lambda v: isinstance(v, str) or _is_str_list(v))
STR_MAP: Kind = ("an object of strings", lambda v: isinstance(v, dict)
                 and all(isinstance(x, str) for x in v.values()))
OBJECT: Kind = ("an object", lambda v: isinstance(v, dict))
OBJECT_ARRAY: Kind = ("an array of objects",
                      lambda v: isinstance(v, list) and all(isinstance(x, dict) for x in v))
INT_LIST: Kind = ("an array of integers",
                  lambda v: isinstance(v, list) and all(_is_int(x) for x in v))

#: Top-level (Config) fields aiorun reads, and the client-side ones Docker clients send.
CONFIG_FIELDS: dict[str, Kind] = {
    "Hostname": STR, "Domainname": STR, "User": STR, "WorkingDir": STR, "Image": STR,
    "StopSignal": STR, "StopTimeout": INT, "MacAddress": STR,
    "AttachStdin": BOOL, "AttachStdout": BOOL, "AttachStderr": BOOL, "Tty": BOOL,
    "OpenStdin": BOOL, "StdinOnce": BOOL, "NetworkDisabled": BOOL, "ArgsEscaped": BOOL,
    "Env": STR_LIST, "Cmd": STR_OR_STR_LIST, "Entrypoint": STR_OR_STR_LIST,
    "Labels": STR_MAP, "ExposedPorts": OBJECT, "Volumes": OBJECT, "OnBuild": STR_LIST,
    "HostConfig": OBJECT, "NetworkingConfig": OBJECT, "Healthcheck": OBJECT,
}

#: HostConfig fields aiorun implements (or, for ContainerIDFile and ConsoleSize, that are
#: client-side hints with nothing to implement), with the type each must have.
HOST_FIELDS: dict[str, Kind] = {
    "Binds": STR_LIST, "Mounts": OBJECT_ARRAY, "NetworkMode": STR, "PortBindings": OBJECT,
    "PublishAllPorts": BOOL, "RestartPolicy": OBJECT, "AutoRemove": BOOL,
    "Memory": INT_OR_STR, "MemorySwap": INT_OR_STR, "NanoCpus": INT_OR_STR, "CpuShares": INT,
    "CpuPeriod": INT, "CpuQuota": INT, "PidsLimit": INT, "CgroupParent": STR,
    "CapAdd": STR_LIST, "CapDrop": STR_LIST, "Privileged": BOOL, "ReadonlyRootfs": BOOL,
    "Dns": STR_LIST, "DnsSearch": STR_LIST, "DnsOptions": STR_LIST, "ExtraHosts": STR_LIST,
    "LogConfig": OBJECT,
    "ContainerIDFile": STR, "ConsoleSize": INT_LIST,
    # process and device options (aiorun.core.run_options)
    "Ulimits": OBJECT_ARRAY, "ShmSize": INT, "Tmpfs": STR_MAP, "PidMode": STR,
    "SecurityOpt": STR_LIST, "GroupAdd": STR_LIST, "Devices": OBJECT_ARRAY, "Init": BOOL,
    "MaskedPaths": STR_LIST, "ReadonlyPaths": STR_LIST,
}

#: Values of a HostConfig field aiorun does not implement that are accepted anyway: they ask
#: for what aiorun does regardless (its containers get a private IPC and cgroup namespace, a
#: 64 MiB /dev/shm, no user namespace, the kernel's default swappiness).
SAME_AS_AIORUN: dict[str, tuple[Any, ...]] = {
    "IpcMode": ("private",), "CgroupnsMode": ("private",),
    "UsernsMode": ("host",), "MemorySwappiness": (-1,), "Isolation": ("default",),
    "Runtime": ("aiorun",),
}

#: Unimplemented fields where 0 is a request, not "unset" (swappiness 0: never swap).
ZERO_IS_A_VALUE = frozenset({"MemorySwappiness"})

#: Legacy links (``--link``): aiorun.engine.containers.links.
HOST_FIELDS["Links"] = STR_LIST


def _is_zero(value: Any) -> bool:
    """What the docker CLI sends for a field nobody set (``ConsoleSize`` is ``[0, 0]``)."""
    if isinstance(value, (list, tuple)):
        return all(_is_zero(v) for v in value)
    return value is None or value is False or value == 0 or value == "" or value == {}


def _check_fields(obj: dict[str, Any], fields: dict[str, Kind], prefix: str) -> None:
    for key, (what, ok) in fields.items():
        value = obj.get(key)
        if value is not None and not ok(value):
            raise InvalidArgument(f"invalid {prefix}{key}: expected {what}, got "
                                  f"{_json_type(value)}")


# --------------------------------------------------------------------------- checks

def _short(value: str, limit: int = 60) -> str:
    return value if len(value) <= limit else value[:limit] + "..."


def check_no_nul(value: Any, where: str = "body") -> None:
    """InvalidArgument naming a string (value or key) under ``value`` that holds a NUL."""
    stack: list[tuple[Any, str]] = [(value, where)]
    while stack:
        v, path = stack.pop()
        if isinstance(v, str):
            if "\x00" in v:
                raise InvalidArgument(f"invalid {path}: {_short(v)!r} contains a NUL byte")
        elif isinstance(v, dict):
            for k, child in v.items():
                if "\x00" in k:
                    raise InvalidArgument(f"invalid key in {path}: {_short(k)!r} contains a "
                                          "NUL byte")
                stack.append((child, f"{path}.{k}" if path != "body" else k))
        elif isinstance(v, list):
            stack.extend((child, f"{path}[{i}]") for i, child in enumerate(v))


def check_name(name: str) -> None:
    """Docker's container-name rule, plus a length cap Docker does not have."""
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidArgument(f"Invalid container name ({_short(name, 40)}): {len(name)} "
                              f"characters, at most {MAX_NAME_LENGTH} are allowed")
    if not NAME_RE.match(name):
        raise InvalidArgument(
            f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")


def check_env(env: list[str]) -> None:
    for entry in env:
        if entry.partition("=")[0] == "":
            raise InvalidArgument(f"invalid environment variable: {entry}")


def check_cgroup_parent(parent: str) -> None:
    """The container's cgroup goes below ``parent``: never the root, never outside it."""
    if ".." in parent.split("/"):
        raise InvalidArgument(f"invalid cgroup parent: {parent!r}: '..' is not allowed")
    if posixpath.normpath(parent).strip("/") in ("", "."):
        raise InvalidArgument(f"invalid cgroup parent: {parent!r}: it must name a cgroup "
                              "below the root")


_HUMAN_SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?) ?([kKmMgGtTpP])?[iI]?[bB]?$")
_DECIMAL = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "p": 10**15}


def parse_log_size(value: str) -> int:
    """Docker's ``units.FromHumanSize`` (decimal: "10m" is 10,000,000 bytes)."""
    m = _HUMAN_SIZE_RE.match(value.strip())
    if not m:
        raise InvalidArgument(f"invalid size: '{value}'")
    return int(float(m.group(1)) * _DECIMAL[(m.group(2) or "").lower()])


def check_log_config(log_config: dict[str, Any]) -> None:
    """The driver must be one aiorun has; its options known and well-formed."""
    _check_fields(log_config, {"Type": STR, "Config": STR_MAP}, "HostConfig.LogConfig.")
    driver = log_config.get("Type") or LOG_DRIVERS[0]
    if driver not in LOG_DRIVERS:
        raise InvalidArgument(f"logger: no log driver named '{driver}' is registered")
    options = log_config.get("Config") or {}
    for key in options:
        if key not in LOG_OPTIONS:
            raise InvalidArgument(f"unknown log opt '{key}' for {driver} log driver")
    if "max-size" in options and parse_log_size(options["max-size"]) <= 0:
        raise InvalidArgument("max-size must be a positive number")
    if "max-file" in options:
        count = options["max-file"].strip()
        if not re.fullmatch(r"[+-]?\d+", count):
            raise InvalidArgument(f"invalid max-file: '{options['max-file']}' is not an "
                                  "integer")
        if int(count) < 1:
            raise InvalidArgument("max-file cannot be less than 1")


def normalized_log_config(log_config: Any) -> dict[str, Any]:
    """The checked LogConfig the engine stores: an empty Type is the default driver."""
    log_config = log_config or {}
    if not isinstance(log_config, dict):
        raise InvalidArgument(f"invalid HostConfig.LogConfig: expected an object, got "
                              f"{_json_type(log_config)}")
    check_log_config(log_config)
    return {"Type": log_config.get("Type") or LOG_DRIVERS[0],
            "Config": dict(log_config.get("Config") or {})}


#: Top-level fields aiorun does not implement (networking is switched off with
#: ``HostConfig.NetworkMode: "none"``), refused when they carry a value.
UNIMPLEMENTED_CONFIG = ("NetworkDisabled",)


def check_unimplemented_config(body: dict[str, Any]) -> None:
    for key in UNIMPLEMENTED_CONFIG:
        value = body.get(key)
        if not _is_zero(value):
            raise InvalidArgument(f"{key} is not supported by aiorun (got "
                                  f"{_short(json.dumps(value))})")


def check_unimplemented(host_config: dict[str, Any]) -> None:
    """Refuse a value in any HostConfig field aiorun would otherwise silently ignore."""
    for key, value in host_config.items():
        if key in HOST_FIELDS or value in SAME_AS_AIORUN.get(key, ()) or value is None:
            continue
        if _is_zero(value) and key not in ZERO_IS_A_VALUE:
            continue
        raise InvalidArgument(f"HostConfig.{key} is not supported by aiorun (got "
                              f"{_short(json.dumps(value))})")


def check_run_options(hc: dict[str, Any]) -> None:
    """The process and device options (types already checked)."""
    ro.check_device_requests(hc.get("DeviceRequests"))
    ro.check_ulimits(hc.get("Ulimits") or [])
    ro.check_shm_size(hc.get("ShmSize"))
    ro.check_tmpfs(hc.get("Tmpfs") or {})
    ro.check_pid_mode(hc.get("PidMode") or "")
    ro.security_opts(hc.get("SecurityOpt") or [])
    ro.check_group_add(hc.get("GroupAdd") or [])
    ro.check_system_paths(hc)
    ro.check_devices(hc.get("Devices") or [])


# --------------------------------------------------------------------------- entry point

def validate_create(body: Any, name: str | None = None) -> None:
    """InvalidArgument (400) for anything wrong in a create body, before it is used.

    ``name`` is the ``?name=`` query parameter (None or "" when the daemon picks one).
    """
    if not isinstance(body, dict):
        raise InvalidArgument("the create request body must be a JSON object")
    check_depth(body)
    if name:
        check_no_nul(name, "container name")
        check_name(name)
    check_no_nul(body)
    _check_fields(body, CONFIG_FIELDS, "")
    check_env(body.get("Env") or [])
    check_unimplemented_config(body)
    check_healthcheck(body.get("Healthcheck"))
    host_config = body.get("HostConfig") or {}
    _check_fields(host_config, HOST_FIELDS, "HostConfig.")
    check_run_options(host_config)
    check_unimplemented(host_config)
    if host_config.get("CgroupParent"):
        check_cgroup_parent(host_config["CgroupParent"])
    check_log_config(host_config.get("LogConfig") or {})
    netopts.check_network_options(body)


# --------------------------------------------------------------------------- exec / update

#: ``POST /containers/{id}/exec`` (Docker's ExecConfig), with the type each field must have.
EXEC_FIELDS: dict[str, Kind] = {
    "User": STR, "Privileged": BOOL, "Tty": BOOL, "ConsoleSize": INT_LIST,
    "AttachStdin": BOOL, "AttachStdout": BOOL, "AttachStderr": BOOL, "Detach": BOOL,
    "DetachKeys": STR, "Env": STR_LIST, "WorkingDir": STR, "Cmd": STR_OR_STR_LIST,
}


def validate_exec(body: Any) -> None:
    """InvalidArgument (400) for anything wrong in an exec create body, before the exec is
    recorded: a NUL byte would otherwise reach ``execve`` at start (a raw ValueError)."""
    if not isinstance(body, dict):
        raise InvalidArgument("the exec request body must be a JSON object")
    check_depth(body)
    check_no_nul(body)
    _check_fields(body, EXEC_FIELDS, "")
    cmd = body.get("Cmd")
    if not cmd or not [a for a in ([cmd] if isinstance(cmd, str) else cmd) if a]:
        raise InvalidArgument("No exec command specified")
    check_env(body.get("Env") or [])
    workdir = body.get("WorkingDir") or ""
    if workdir and not workdir.startswith("/"):
        raise InvalidArgument(f"the working directory '{workdir}' is invalid, it needs to be "
                              "an absolute path")


#: The fields ``POST /containers/{id}/update`` changes (the engine's
#: ``core.host_config.UPDATABLE``), typed as at create.
UPDATE_FIELDS: dict[str, Kind] = {
    key: HOST_FIELDS[key] for key in ("Memory", "MemorySwap", "NanoCpus", "CpuQuota",
                                      "CpuPeriod", "CpuShares", "PidsLimit", "RestartPolicy")}
RESTART_POLICY_FIELDS: dict[str, Kind] = {"Name": STR, "MaximumRetryCount": INT}


def validate_update(body: Any) -> None:
    """InvalidArgument (400) for anything wrong in an update body. Docker's UpdateConfig
    carries every resource field; the docker CLI sends the ones nobody set as zero values,
    which are accepted. Any other field with a value would be silently ignored: refused."""
    if not isinstance(body, dict):
        raise InvalidArgument("the update body must be a JSON object")
    check_depth(body)
    check_no_nul(body)
    _check_fields(body, UPDATE_FIELDS, "")
    policy = body.get("RestartPolicy")
    if policy:
        _check_fields(policy, RESTART_POLICY_FIELDS, "RestartPolicy.")
    for key, value in body.items():
        if key in UPDATE_FIELDS or value is None or value in SAME_AS_AIORUN.get(key, ()):
            continue
        if _is_zero(value) and key not in ZERO_IS_A_VALUE:
            continue
        raise InvalidArgument(f"updating {key} is not supported by aiorun (got "
                              f"{_short(json.dumps(value))})")

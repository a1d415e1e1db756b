"""The run/create flag → create-body table (aiorun.cli.createbody.BODY_FIELDS), row by row."""

import pytest

from aiorun.cli.containers import cmd_run
from aiorun.cli.createbody import BODY_FIELDS, build_create
from aiorun.errors import InvalidArgument


def body_of(*flags):
    opts, rest = cmd_run.command.parse(list(flags) + ["busybox"])
    return build_create(opts, rest)[0]


# (flags, body path, value): at least one row per table entry (checked below)
ROWS = [
    (["--entrypoint", "/bin/sh"], "Entrypoint", ["/bin/sh"]),
    (["--entrypoint", ""], "Entrypoint", [""]),
    (["-e", "A=1", "--env=B=2"], "Env", ["A=1", "B=2"]),
    (["-w", "/w"], "WorkingDir", "/w"),
    (["-u", "1:2"], "User", "1:2"),
    (["-h", "box"], "Hostname", "box"),
    (["--stop-signal", "SIGINT"], "StopSignal", "SIGINT"),
    (["--stop-timeout", "3"], "StopTimeout", 3),
    (["-l", "a=b", "--label", "c"], "Labels", {"a": "b", "c": ""}),
    (["-m", "64m"], "HostConfig.Memory", 64 << 20),
    (["--memory-swap", "-1"], "HostConfig.MemorySwap", -1),
    (["--memory-swap", "1g"], "HostConfig.MemorySwap", 1 << 30),
    (["--cpus", "1.5"], "HostConfig.NanoCpus", 1_500_000_000),
    (["-c", "512"], "HostConfig.CpuShares", 512),
    (["--pids-limit", "9"], "HostConfig.PidsLimit", 9),
    (["--restart", "always"], "HostConfig.RestartPolicy",
     {"Name": "always", "MaximumRetryCount": 0}),
    (["--rm"], "HostConfig.AutoRemove", True),
    (["--network", "net1"], "HostConfig.NetworkMode", "net1"),
    (["--net-alias", "web", "--ip", "10.0.0.5", "--mac-address", "02:42:ac:11:00:02"],
     "NetworkingConfig", {"EndpointsConfig": {"bridge": {
         "Aliases": ["web"], "IPAMConfig": {"IPv4Address": "10.0.0.5"},
         "MacAddress": "02:42:ac:11:00:02"}}}),
    (["-p", "8080:80"], "HostConfig.PortBindings",
     {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}),
    (["--expose", "53/udp", "-p", "80"], "ExposedPorts", {"53/udp": {}, "80/tcp": {}}),
    (["-P"], "HostConfig.PublishAllPorts", True),
    (["-v", "/a:/b"], "HostConfig.Binds", ["/a:/b"]),
    (["--link", "db:data"], "HostConfig.Links", ["db:data"]),
    (["--tmpfs", "/run"], "HostConfig.Mounts.0.Target", "/run"),
    (["--privileged"], "HostConfig.Privileged", True),
    (["--cap-add", "NET_ADMIN"], "HostConfig.CapAdd", ["NET_ADMIN"]),
    (["--cap-drop", "ALL"], "HostConfig.CapDrop", ["ALL"]),
    (["--cgroup-parent", "/p"], "HostConfig.CgroupParent", "/p"),
    (["--read-only"], "HostConfig.ReadonlyRootfs", True),
    (["--dns", "1.1.1.1"], "HostConfig.Dns", ["1.1.1.1"]),
    (["--dns-search", "a.example"], "HostConfig.DnsSearch", ["a.example"]),
    (["--dns-option", "ndots:2"], "HostConfig.DnsOptions", ["ndots:2"]),
    (["--network", "n6", "--ip6", "fd00::5"], "NetworkingConfig",
     {"EndpointsConfig": {"n6": {"IPAMConfig": {"IPv6Address": "fd00::5"}}}}),
    (["--add-host", "h:1.2.3.4"], "HostConfig.ExtraHosts", ["h:1.2.3.4"]),
    (["--init"], "HostConfig.Init", True),
    (["--ulimit", "nofile=10:20", "--ulimit", "core=0"], "HostConfig.Ulimits",
     [{"Name": "nofile", "Soft": 10, "Hard": 20}, {"Name": "core", "Soft": 0, "Hard": 0}]),
    (["--ulimit", "files=1"], "HostConfig.Ulimits", "refused: invalid ulimit type: files"),
    (["--shm-size", "128m"], "HostConfig.ShmSize", 128 << 20),
    (["--device", "/dev/fuse:/dev/f:r"], "HostConfig.Devices",
     [{"PathOnHost": "/dev/fuse", "PathInContainer": "/dev/f", "CgroupPermissions": "r"}]),
    (["--pid", "host"], "HostConfig.PidMode", "host"),
    (["--security-opt", "seccomp=unconfined", "--security-opt", "no-new-privileges"],
     "HostConfig.SecurityOpt", ["seccomp=unconfined", "no-new-privileges"]),
    (["--group-add", "audio", "--group-add", "7"], "HostConfig.GroupAdd", ["audio", "7"]),
    (["--gpus", "all"], "HostConfig.DeviceRequests",
     "refused: --gpus is not supported by aiorun"),
    (["--health-cmd", "true", "--health-interval", "1m30s", "--health-timeout", "500ms",
      "--health-start-period", "2s", "--health-start-interval", "1s", "--health-retries",
      "4"], "Healthcheck",
     {"Test": ["CMD-SHELL", "true"], "Interval": 90_000_000_000, "Timeout": 500_000_000,
      "StartPeriod": 2_000_000_000, "StartInterval": 1_000_000_000, "Retries": 4}),
    (["--no-healthcheck"], "Healthcheck", {"Test": ["NONE"]}),
    (["--health-interval", "soon"], "Healthcheck",
     "refused: invalid argument \"soon\" for \"--health-interval\" flag"),
    (["--log-opt", "max-size=10m", "--log-opt", "max-file=2"], "HostConfig.LogConfig",
     {"Type": "", "Config": {"max-size": "10m", "max-file": "2"}}),
    (["--log-driver", "json-file"], "HostConfig.LogConfig", {"Type": "json-file", "Config": {}}),
]


def _at(body, path):
    for part in path.split("."):
        body = body[int(part)] if part.isdigit() else body[part]
    return body


@pytest.mark.parametrize("flags,path,value", ROWS, ids=[" ".join(r[0]) for r in ROWS])
def test_row(flags, path, value):
    if isinstance(value, str) and value.startswith("refused: "):
        # docker flags aiorun does not have: refused by the CLI, never sent to the daemon
        with pytest.raises(InvalidArgument) as exc:
            body_of(*flags)
        assert exc.value.message.startswith(value.removeprefix("refused: "))
        return
    assert _at(body_of(*flags), path) == value


def test_every_table_row_is_tested_and_names_declared_options():
    declared = {o.dest for o in cmd_run.command.options}
    tested = {r[1].split(".0")[0] for r in ROWS}
    for dests, path, _ in BODY_FIELDS:
        assert set(dests) <= declared, dests
        assert path in tested, path


def test_defaults_leave_fields_out():
    body = body_of()
    assert body == {"Image": "busybox", "Tty": False, "OpenStdin": False, "StdinOnce": False,
                    "AttachStdin": False, "AttachStdout": True, "AttachStderr": True,
                    "HostConfig": {}}
    for empty in (["-w", ""], ["-m", ""], ["--network", ""], ["-c", ""]):
        assert body_of(*empty) == body, empty


def test_attach_fields_follow_detach_and_interactive():
    b = body_of("-it")
    assert b["Tty"] and b["OpenStdin"] and b["StdinOnce"] and b["AttachStdin"]
    b = body_of("-d", "-i")
    assert b["OpenStdin"] and not b["StdinOnce"] and not b["AttachStdout"]


def test_name_and_command():
    opts, rest = cmd_run.command.parse(["--name", "web", "busybox", "echo", "-x"])
    body, name = build_create(opts, rest)
    assert name == "web" and body["Cmd"] == ["echo", "-x"]

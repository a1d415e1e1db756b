"""aiorun-runtime's command line (aiorun.oci.args), as containerd's shim, conmon and users
spell it."""

from __future__ import annotations

import pytest

from aiorun.oci.args import parse
from aiorun.oci.errors import UsageError


@pytest.mark.parametrize("argv, verb, opts, pos, rest", [
    (["--root", "/r", "--log", "/l", "--log-format", "json", "create", "--bundle", "/b",
      "--pid-file", "/p", "c1"], "create",
     {"root": "/r", "log": "/l", "log_format": "json", "bundle": "/b", "pid_file": "/p"},
     {"id": "c1"}, []),
    (["--root=/r", "create", "-b", "/b", "--console-socket=/s", "c1"], "create",
     {"root": "/r", "bundle": "/b", "console_socket": "/s"}, {"id": "c1"}, []),
    (["start", "c1"], "start", {}, {"id": "c1"}, []),
    (["kill", "c1", "KILL"], "kill", {}, {"id": "c1", "signal": "KILL"}, []),
    (["kill", "--all", "c1", "9"], "kill", {"all": True}, {"id": "c1", "signal": "9"}, []),
    (["kill", "c1"], "kill", {}, {"id": "c1"}, []),
    (["delete", "--force", "c1"], "delete", {"force": True}, {"id": "c1"}, []),
    (["delete", "--force=false", "c1"], "delete", {"force": False}, {"id": "c1"}, []),
    (["exec", "-d", "--pid-file", "/p", "--process", "/proc.json", "c1"], "exec",
     {"detach": True, "pid_file": "/p", "process": "/proc.json"}, {"id": "c1"}, []),
    (["exec", "-e", "A=1", "-e", "B=2", "c1", "sh", "-c", "echo -n x"], "exec",
     {"env": ["A=1", "B=2"]}, {"id": "c1"}, ["sh", "-c", "echo -n x"]),
    (["exec", "c1", "--", "ls", "-l"], "exec", {}, {"id": "c1"}, ["ls", "-l"]),
    (["ps", "--format", "json", "c1"], "ps", {"format": "json"}, {"id": "c1"}, []),
    (["update", "--memory", "1024", "-r", "-", "c1"], "update",
     {"memory": "1024", "resources": "-"}, {"id": "c1"}, []),
    (["list", "-q"], "list", {"quiet": True}, {}, []),
    (["--systemd-cgroup", "state", "c1"], "state", {"systemd_cgroup": True}, {"id": "c1"}, []),
    (["--version"], "", {"version": True}, {}, []),
    ([], "", {}, {}, []),
])
def test_parse(argv, verb, opts, pos, rest):
    a = parse(argv)
    assert (a.verb, a.opts, a.pos, a.rest) == (verb, opts, pos, rest)


@pytest.mark.parametrize("argv, message", [
    (["--bogus", "state", "c1"], "unknown global option --bogus"),
    (["frobnicate", "c1"], "unknown command 'frobnicate'"),
    (["create", "--bundle"], "option --bundle needs a value"),
    (["create", "--no-such", "c1"], "create: unknown option --no-such"),
    (["start"], "start: missing ID"),
    (["start", "a", "b"], "start: unexpected argument 'b'"),
    (["delete", "--force=maybe", "c1"], "option --force takes no value"),
])
def test_usage_errors(argv, message):
    with pytest.raises(UsageError) as e:
        parse(argv)
    assert message in str(e.value)

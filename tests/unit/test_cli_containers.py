"""The container CLI's pure parts: docker-style option parsing, create bodies, ps rows."""

import pytest

from aiorun.cli import common, createbody, listing
from aiorun.cli.containers import cmd_run
from aiorun.cli.options import BOOL, Command, Option, UsageError


def parse(argv):
    return cmd_run.command.parse(argv)


def test_docker_style_flags():
    o, rest = parse(["-it", "--rm", "-e", "A=1", "-eB=2", "--name=web", "-p8080:80",
                     "--memory", "1g", "busybox", "sh", "-c", "echo -e x"])
    assert o.interactive and o.tty and o.rm and o.name == "web"
    assert o.env == ["A=1", "B=2"] and o.publish == ["8080:80"] and o.memory == "1g"
    assert rest == ["busybox", "sh", "-c", "echo -e x"]        # options end at the image
    o, rest = parse(["-d", "--", "busybox", "-x"])
    assert o.detach and rest == ["busybox", "-x"]
    with pytest.raises(UsageError, match="unknown flag"):
        parse(["--bogus", "busybox"])
    with pytest.raises(UsageError, match="needs an argument"):
        parse(["--name"])
    o, rest = Command("ps", "", "", [Option("-a --all", BOOL)]).parse(["x", "-a", "y"])
    assert o.all and rest == ["x", "y"]                       # interspersed for ps & co


def test_build_create_body(monkeypatch):
    monkeypatch.setenv("FROM_HOST", "yes")
    monkeypatch.delenv("UNSET_VAR", raising=False)
    o, rest = parse(["--name", "n1", "-e", "A=1", "-e", "FROM_HOST", "-e", "UNSET_VAR",
                     "-w", "/w", "-u", "1:2", "--memory", "64m", "--cpus", "0.5",
                     "--pids-limit", "9", "--restart", "on-failure:2", "-p", "8080:80",
                     "-v", "/a:/b", "--cap-add", "NET_ADMIN", "--read-only", "--entrypoint", "",
                     "-l", "k=v", "--network-alias", "web", "--network", "net1",
                     "busybox", "echo", "hi"])
    body, name = createbody.build_create(o, rest)
    hc = body["HostConfig"]
    assert name == "n1" and body["Image"] == "busybox" and body["Cmd"] == ["echo", "hi"]
    assert body["Entrypoint"] == [""] and body["Env"] == ["A=1", "FROM_HOST=yes"]
    assert body["WorkingDir"] == "/w" and body["User"] == "1:2" and body["Labels"] == {"k": "v"}
    assert hc["Memory"] == 64 << 20 and hc["NanoCpus"] == 500_000_000 and hc["PidsLimit"] == 9
    assert hc["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 2}
    assert hc["PortBindings"] == {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}
    assert "80/tcp" in body["ExposedPorts"] and hc["Binds"] == ["/a:/b"]
    assert hc["CapAdd"] == ["NET_ADMIN"] and hc["ReadonlyRootfs"] and hc["NetworkMode"] == "net1"
    assert body["NetworkingConfig"] == {"EndpointsConfig": {"net1": {"Aliases": ["web"]}}}
    assert body["AttachStdout"] and not body["AttachStdin"]


@pytest.mark.parametrize("argv,msg", [
    (["--memory", "12q", "busybox"], "invalid argument \"12q\" for \"-m, --memory\" flag: "
                                     "invalid size: '12q'"),
    (["--cpus", "x", "busybox"], "--cpus"),
    (["--restart", "sometimes", "busybox"], "restart policy"),
    (["--pids-limit", "many", "busybox"], "--pids-limit"),
    ([], "requires at least 1 argument"),
])
def test_build_create_errors(argv, msg):
    o, rest = parse(argv)
    with pytest.raises(UsageError) as ei:
        createbody.build_create(o, rest)
    assert msg in str(ei.value)


def test_start_error_codes():
    assert common.start_error_code('exec: "x": executable file not found in $PATH') == 127
    assert common.start_error_code('exec: "/etc/passwd": permission denied') == 126
    assert common.start_error_code('exec: "/etc": is a directory') == 126   # docker: EISDIR
    assert common.start_error_code("port is already allocated") == 125


def test_ps_rows_and_table():
    c = {"Id": "a" * 64, "Image": "busybox", "Command": "sh -c 'echo hello world'",
         "Created": 1000, "Status": "Up 2 seconds", "State": "running", "Names": ["/web"],
         "Ports": [], "Labels": {"x": "y"}}
    row = listing.ps_row(c, no_trunc=False, now=1125)
    assert row["ID"] == "a" * 12 and row["Names"] == "web"
    assert row["Command"] == '"sh -c \'echo hello w…"' and row["RunningFor"] == "2 minutes ago"
    assert listing.ps_row(c, no_trunc=True, now=1125)["Command"] == '"sh -c \'echo hello world\'"'
    from aiorun.core.templates import render_table
    out = render_table(listing.PS_DEFAULT, [row], listing.PS_HEADERS)
    head, line = out.splitlines()
    assert head.startswith("CONTAINER ID   IMAGE     COMMAND")
    assert line.startswith("aaaaaaaaaaaa   busybox   ")

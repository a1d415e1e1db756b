import random

import pytest

from aiorun.core import spec
from aiorun.errors import InvalidArgument

IMG = {"config": {"Env": ["PATH=/usr/bin:/bin", "A=1"], "Cmd": ["sh"], "WorkingDir": "/w",
                  "ExposedPorts": {"80/tcp": {}}, "Labels": {"img": "1"}}}
CID = "0123456789abcdef" * 4


def merge(body, img=IMG, **kw):
    return spec.merge(body, img, container_id=CID, **kw)


@pytest.mark.parametrize("value,expected", [
    ("512m", 512 << 20), ("1g", 1 << 30), ("1G", 1 << 30), ("1024", 1024), ("1.5g", 3 << 29),
    ("10MiB", 10 << 20), ("2 kb", 2048), (1000, 1000),
])
def test_parse_memory(value, expected):
    assert spec.parse_memory(value) == expected


@pytest.mark.parametrize("value", ["12q", "", "m", "-1m", "1.2.3g", "abc"])
def test_parse_memory_errors(value):
    with pytest.raises(InvalidArgument, match="invalid size"):
        spec.parse_memory(value)


def test_cpus_and_signals():
    assert spec.parse_cpus("1.5") == 1_500_000_000
    with pytest.raises(InvalidArgument):
        spec.parse_cpus("x")
    assert spec.parse_signal("SIGKILL") == 9 == spec.parse_signal("kill") == spec.parse_signal("9")
    assert spec.parse_signal(None) == 15
    with pytest.raises(InvalidArgument, match="invalid signal"):
        spec.parse_signal("SIGNOPE")


@pytest.mark.parametrize("value,expected", [
    ("no", {"Name": "no", "MaximumRetryCount": 0}),
    ("always", {"Name": "always", "MaximumRetryCount": 0}),
    ("unless-stopped", {"Name": "unless-stopped", "MaximumRetryCount": 0}),
    ("on-failure", {"Name": "on-failure", "MaximumRetryCount": 0}),
    ("on-failure:2", {"Name": "on-failure", "MaximumRetryCount": 2}),
])
def test_restart_policy(value, expected):
    assert spec.parse_restart_policy(value) == expected


@pytest.mark.parametrize("value", ["sometimes", "always:3", "on-failure:x", "on-failure:-1"])
def test_restart_policy_errors(value):
    with pytest.raises(InvalidArgument, match="restart policy"):
        spec.parse_restart_policy(value)


def test_names():
    assert spec.validate_name("/web-1") == "web-1"
    for bad in ("a", "-x", "a b", "x/y", "", "é1"):
        with pytest.raises(InvalidArgument, match="Invalid container name"):
            spec.validate_name(bad)
    rng = random.Random(1)
    n = spec.random_name(rng=rng)
    assert "_" in n and spec.validate_name(n) == n
    taken = {spec.random_name(rng=random.Random(2))}
    assert spec.random_name(taken, rng=random.Random(2)) not in taken


def test_merge_defaults_from_image():
    s = merge({"Image": "busybox"})
    assert s.argv == ["sh"] and s.config["Cmd"] == ["sh"] and s.config["Entrypoint"] is None
    assert s.config["Hostname"] == CID[:12]
    assert s.config["WorkingDir"] == "/w"
    assert s.config["ExposedPorts"] == {"80/tcp": {}}
    assert s.config["Image"] == "busybox"
    assert s.host_config["RestartPolicy"] == {"Name": "no", "MaximumRetryCount": 0}
    assert s.host_config["NetworkMode"] == "bridge"


def test_merge_entrypoint_rules():
    img = {"config": {"Entrypoint": ["/ep"], "Cmd": ["dflt"]}}
    assert merge({}, img).argv == ["/ep", "dflt"]
    assert merge({"Cmd": ["x"]}, img).argv == ["/ep", "x"]
    # a new entrypoint drops the image's Cmd
    assert merge({"Entrypoint": ["/other"]}, img).argv == ["/other"]
    assert merge({"Entrypoint": "/other", "Cmd": "y"}, img).argv == ["/other", "y"]
    # an explicit empty entrypoint resets it
    assert merge({"Entrypoint": [""], "Cmd": ["echo"]}, img).argv == ["echo"]
    with pytest.raises(InvalidArgument, match="no command"):
        merge({}, {"config": {}})
    with pytest.raises(InvalidArgument, match="Cmd"):
        merge({"Cmd": 3})


def test_merge_env():
    # Config.Env keeps a bare "PATH" as given (Docker does); the process env drops it
    s = merge({"Env": ["A=2", "B=3", "PATH", "FOO"]})
    assert s.config["Env"] == ["PATH", "A=2", "B=3", "FOO"]
    assert spec.merge_env(["X=1"], ["Y=2", "X=3"]) == ["X=3", "Y=2"]


@pytest.mark.parametrize("defaults,env,expected", [
    ([], ["A=1", "B"], ["A=1"]),
    (["PATH=/bin", "HOSTNAME=h"], ["PATH", "X=1"], ["HOSTNAME=h", "X=1"]),
    (["PATH=/bin"], ["PATH=/usr/bin", "PATH=/sbin"], ["PATH=/sbin"]),
    (["A=1"], ["A", "A=2"], ["A=2"]),
])
def test_process_env(defaults, env, expected):
    assert spec.process_env(defaults, env) == expected
    with pytest.raises(InvalidArgument, match="environment"):
        merge({"Env": ["=x"]})


def test_merge_host_config_validation():
    s = merge({"HostConfig": {"Memory": "64m", "NanoCpus": 500_000_000, "PidsLimit": 0,
                              "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 2},
                              "CapAdd": ["net_admin"], "PortBindings": {"8080": [{}]}}},
              ncpu=2)
    hc = s.host_config
    assert hc["Memory"] == 64 << 20 and hc["PidsLimit"] is None and hc["CapAdd"] == ["CAP_NET_ADMIN"]
    assert "8080/tcp" in hc["PortBindings"] and "8080/tcp" in s.config["ExposedPorts"]
    for hcfg, msg in [
        ({"Memory": "12q"}, "invalid size"),
        ({"Memory": 1024}, "Minimum memory"),
        ({"NanoCpus": 5_000_000_000}, "Range of CPUs"),
        ({"RestartPolicy": {"Name": "always", "MaximumRetryCount": 3}}, "retry"),
        ({"AutoRemove": True, "RestartPolicy": {"Name": "always"}}, "AutoRemove"),
        ({"CapAdd": "x"}, "CapAdd"),
        ({"CgroupParent": "../x"}, "cgroup parent"),
    ]:
        with pytest.raises(InvalidArgument, match=msg):
            merge({"HostConfig": hcfg}, ncpu=2)


def test_merge_other_validation():
    with pytest.raises(InvalidArgument, match="absolute"):
        merge({"WorkingDir": "rel"})
    with pytest.raises(InvalidArgument, match="signal"):
        merge({"StopSignal": "SIGFOO"})
    with pytest.raises(InvalidArgument, match="JSON object"):
        spec.merge([], IMG, container_id=CID)
    s = merge({"User": "nobody", "Hostname": "box", "Labels": {"a": "b"}, "Tty": True})
    assert s.config["User"] == "nobody" and s.config["Hostname"] == "box"
    assert s.config["Labels"] == {"img": "1", "a": "b"} and s.config["Tty"] is True

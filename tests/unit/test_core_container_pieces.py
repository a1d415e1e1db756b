"""Pure pieces the container rooms use: HostConfig → limits/env/security, the /etc file
texts, and the Docker-shaped views and list filters."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from aiorun.core import container_views as views
from aiorun.core import etc_files
from aiorun.core import host_config as hcfg
from aiorun.core import state as st
from aiorun.errors import InvalidArgument, NotFound


# -- host_config ------------------------------------------------------------------------

@pytest.mark.parametrize("hc,cpus", [
    ({}, None),
    ({"NanoCpus": 1_500_000_000}, 1.5),
    ({"CpuQuota": 50_000, "CpuPeriod": 100_000}, 0.5),
    ({"NanoCpus": 2_000_000_000, "CpuQuota": 50_000, "CpuPeriod": 100_000}, 2.0),
    ({"CpuQuota": 50_000}, None),
])
def test_cpus_of(hc, cpus):
    assert hcfg.cpus_of(hc) == cpus


@pytest.mark.parametrize("hc,limits", [
    ({}, {"memory": None, "memory_swap": None, "cpus": None, "cpu_shares": None,
          "pids": None}),
    ({"Memory": 64 << 20, "MemorySwap": -1, "CpuShares": 512, "PidsLimit": 10,
      "NanoCpus": 500_000_000},
     {"memory": 64 << 20, "memory_swap": -1, "cpus": 0.5, "cpu_shares": 512, "pids": 10}),
    ({"Memory": 0, "PidsLimit": 0}, {"memory": None, "memory_swap": None, "cpus": None,
                                     "cpu_shares": None, "pids": None}),
])
def test_cgroup_limits(hc, limits):
    assert hcfg.cgroup_limits(hc) == limits


@pytest.mark.parametrize("hc,body,merged_keys,changes", [
    ({"Memory": 1}, {"Memory": 2, "Bogus": 1}, {"Memory": 2}, {"Memory": 2}),
    ({"CpuQuota": 5, "CpuPeriod": 10}, {"NanoCpus": 1}, {"NanoCpus": 1, "CpuQuota": 0,
                                                       "CpuPeriod": 0}, {"NanoCpus": 1}),
    ({"NanoCpus": 7}, {"CpuQuota": 5}, {"NanoCpus": 0, "CpuQuota": 5}, {"CpuQuota": 5}),
    ({"Memory": 1}, {"Memory": None, "PidsLimit": ""}, {"Memory": 1}, {}),
])
def test_updated_host_config(hc, body, merged_keys, changes):
    merged, got = hcfg.updated_host_config(hc, body)
    assert got == changes
    for k, v in merged_keys.items():
        assert merged[k] == v
    assert "Bogus" not in merged


@pytest.mark.parametrize("cfg,env", [
    ({}, [f"PATH={hcfg.DEFAULT_PATH}", "HOSTNAME="]),
    ({"Hostname": "h", "Env": ["PATH=/x", "A=1"]}, ["HOSTNAME=h", "PATH=/x", "A=1"]),
    ({"Tty": True}, [f"PATH={hcfg.DEFAULT_PATH}", "HOSTNAME=", "TERM=xterm"]),
    ({"Tty": True, "Env": ["TERM=dumb"]}, [f"PATH={hcfg.DEFAULT_PATH}", "HOSTNAME=",
                                           "TERM=dumb"]),
])
def test_container_env(cfg, env):
    assert hcfg.container_env(cfg) == env


@pytest.mark.parametrize("hc,want", [
    ({}, {"privileged": False, "cap_add": [], "cap_drop": [], "no_new_privileges": True,
          "readonly_rootfs": False, "seccomp": "default", "group_add": [], "unmasked_paths": False}),
    ({"Privileged": True, "CapAdd": ["NET_ADMIN"], "ReadonlyRootfs": True},
     {"privileged": True, "cap_add": ["NET_ADMIN"], "cap_drop": [], "no_new_privileges": False,
      "readonly_rootfs": True, "seccomp": "default", "group_add": [], "unmasked_paths": False}),
    ({"SecurityOpt": ["seccomp=unconfined", "no-new-privileges"], "GroupAdd": ["audio", "7"]},
     {"privileged": False, "cap_add": [], "cap_drop": [], "no_new_privileges": True,
      "readonly_rootfs": False, "seccomp": "unconfined", "group_add": ["audio", "7"], "unmasked_paths": False}),
    ({"Privileged": True, "SecurityOpt": ["no-new-privileges"]},
     {"privileged": True, "cap_add": [], "cap_drop": [], "no_new_privileges": True,
      "readonly_rootfs": False, "seccomp": "default", "group_add": [], "unmasked_paths": False}),
])
def test_security_options(hc, want):
    assert hcfg.security_options(hc) == want


# -- etc_files --------------------------------------------------------------------------

@pytest.mark.parametrize("args,tail", [
    (("h", "", [("10.0.0.3", "peer")], []), ""),
    (("h", "10.0.0.2", [("10.0.0.3", "peer")], []), "10.0.0.2\th\n10.0.0.3\tpeer\n"),
    (("h", "", [], ["db:10.1.1.1"]), "10.1.1.1\tdb\n"),
])
def test_hosts_text(args, tail):
    assert etc_files.hosts_text(*args) == etc_files.HOSTS_HEAD + tail


@pytest.mark.parametrize("dns,host,want", [
    (["1.1.1.1", "9.9.9.9"], "nameserver 10.0.0.1\n",
     "nameserver 1.1.1.1\nnameserver 9.9.9.9\n"),
    ([], "search lan\nnameserver 127.0.0.53\nnameserver 10.0.0.1\n",
     "search lan\nnameserver 10.0.0.1\n"),
    ([], "nameserver 127.0.0.53\nnameserver ::1\n",
     "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"),
    ([], "", "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"),
])
def test_resolv_conf_text(dns, host, want):
    assert etc_files.resolv_conf_text(dns, host) == want


def test_hostname_text():
    assert etc_files.hostname_text("abc") == "abc\n"


# -- views ------------------------------------------------------------------------------

@dataclass
class Rec:
    id: str = "ab" * 32
    name: str = "web"
    created_ns: int = 2_000_000_000
    image_id: str = "sha256:" + "cd" * 32
    config: dict[str, Any] = field(default_factory=lambda: {"Image": "busybox",
                                                           "Labels": {"a": "1", "b": ""}})
    host_config: dict[str, Any] = field(default_factory=dict)
    path: str = "sh"
    args: list[str] = field(default_factory=lambda: ["-c", "echo hi"])
    driver: str = "overlay2"
    state: st.State = field(default_factory=st.State)
    exec_ids: list[str] = field(default_factory=list)


def created_of(ref: str) -> int:
    if ref == "old":
        return 1_000_000_000
    if ref == "new":
        return 3_000_000_000
    raise NotFound(ref)


@pytest.mark.parametrize("filters,ok", [
    ({"id": ["abab"]}, True), ({"id": ["ff"]}, False),
    ({"name": ["/we"]}, True), ({"name": ["db"]}, False),
    ({"status": ["created"]}, True), ({"status": ["running"]}, False),
    ({"exited": ["0"]}, False),
    ({"label": ["a=1"]}, True), ({"label": ["a=2"]}, False), ({"label": ["b"]}, True),
    ({"label": ["a", "c"]}, False),
    ({"ancestor": ["busybox"]}, True), ({"ancestor": ["cdcd"]}, True),
    ({"ancestor": ["sha256:cdcd"]}, True), ({"ancestor": ["alpine"]}, False),
    ({"before": ["new"]}, True), ({"before": ["old"]}, False),
    ({"since": ["old"]}, True), ({"since": ["new"]}, False),
    ({"id": []}, True),
    ({"name": "web"}, True),
])
def test_filters(filters, ok):
    assert views.matches(Rec(), filters, created_of) is ok


@pytest.mark.parametrize("filters", [{"status": ["bogus"]}, {"nope": ["x"]}, {"until": ["1"]},
                                     {"before": ["missing"]}])
def test_bad_filters(filters):
    with pytest.raises(InvalidArgument):
        views.matches(Rec(), filters, created_of)


def test_until_only_for_prune_and_exited_filter():
    # Rec was created 2 s after the epoch: until is "created before", never ignored
    assert views.matches(Rec(), {"until": ["3"]}, created_of, prune=True)
    assert not views.matches(Rec(), {"until": ["1"]}, created_of, prune=True)
    assert views.matches(Rec(), {"until": ["1h"]}, created_of, prune=True)    # long ago
    r = Rec()
    r.state.to_running(5)
    r.state.to_exited(3)
    assert views.matches(r, {"exited": ["3"]}, created_of)
    assert not views.matches(r, {"exited": ["0"]}, created_of)


@pytest.mark.parametrize("status,filters,listed", [
    ("created", None, False), ("running", None, True), ("paused", None, True),
    ("restarting", None, True), ("exited", None, False),
    ("exited", {"status": ["exited"]}, True),
])
def test_listed_by_default(status, filters, listed):
    assert views.listed_by_default(Rec(state=st.State(status=status)), filters) is listed


def test_summary_and_inspect_shapes():
    r = Rec()
    net = views.default_network_settings()
    net["Ports"] = {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}
    s = views.summary_view(r, network_settings=net, mounts=[], now_ns=3_000_000_000)
    assert s["Names"] == ["/web"] and s["Command"] == "sh -c 'echo hi'"
    assert s["Created"] == 2 and s["State"] == "created" and s["Status"] == "Created"
    assert s["Ports"] == [{"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080,
                           "Type": "tcp"}]
    assert s["HostConfig"] == {"NetworkMode": "bridge"}
    files = {k: f"/x/{k}" for k in ("ResolvConfPath", "HostnamePath", "HostsPath", "LogPath")}
    i = views.inspect_view(r, files=files, graph={}, mounts=[], network_settings=net)
    assert i["Name"] == "/web" and i["ExecIDs"] is None and i["GraphDriver"] == \
        {"Name": "overlay2", "Data": None}
    assert i["State"]["Status"] == "created" and i["HostsPath"] == "/x/HostsPath"
    assert i["Created"] == st.rfc3339(r.created_ns)


def test_command_line():
    assert views.command_line("sh", []) == "sh"
    assert views.command_line("sh", ["-c", "a b"]) == "sh -c 'a b'"


@pytest.mark.parametrize("args,kw,tail", [
    (("h", "10.0.0.2", [("10.0.0.3", "peer"), ("fd00::3", "peer")], []), {"ip6": "fd00::2"},
     "10.0.0.2\th\nfd00::2\th\n10.0.0.3\tpeer\nfd00::3\tpeer\n"),
    (("h", "10.0.0.2", [], ["gw:host-gateway", "db=10.1.1.1", "v6:[fd00::9]",
                            "v6b=fd00::a"]), {"host_gateway": "10.0.0.1"},
     "10.0.0.2\th\n10.0.0.1\tgw\n10.1.1.1\tdb\nfd00::9\tv6\nfd00::a\tv6b\n"),
    (("h", "", [], ["gw:host-gateway"]), {}, ""),          # gateway not known yet: later
])
def test_hosts_text_v6_and_add_host_forms(args, kw, tail):
    assert etc_files.hosts_text(*args, **kw) == etc_files.HOSTS_HEAD + tail


@pytest.mark.parametrize("entry,err", [
    ("nocolon", "bad format for add-host"),
    (":10.0.0.1", "bad format for add-host"),
    ("db:notanip", "invalid IP address in add-host: 'notanip'"),
    ("db:10.0.0.300", "invalid IP address in add-host"),
])
def test_extra_host_bad_input(entry, err):
    with pytest.raises(InvalidArgument, match=err):
        etc_files.check_extra_hosts([entry])


def test_host_gateway_needs_a_network():
    etc_files.check_extra_hosts(["gw:host-gateway"], "bridge")
    with pytest.raises(InvalidArgument, match="network mode none has no host gateway"):
        etc_files.check_extra_hosts(["gw:host-gateway"], "none")


HOST_RESOLV = "search lan corp\nnameserver 10.0.0.1\noptions edns0\n"


@pytest.mark.parametrize("dns,search,options,want", [
    ([], [], [], HOST_RESOLV),
    (["1.1.1.1"], [], [], "nameserver 1.1.1.1\nsearch lan corp\noptions edns0\n"),
    ([], ["a.example", "b.example"], [],
     "nameserver 10.0.0.1\noptions edns0\nsearch a.example b.example\n"),
    ([], ["."], [], "nameserver 10.0.0.1\noptions edns0\n"),
    ([], [], ["ndots:2", "timeout:1"], "search lan corp\nnameserver 10.0.0.1\n"
                                       "options ndots:2 timeout:1\n"),
    (["fd00::53"], ["x"], ["ndots:0"], "nameserver fd00::53\nsearch x\noptions ndots:0\n"),
])
def test_resolv_conf_search_and_options(dns, search, options, want):
    assert etc_files.resolv_conf_text(dns, HOST_RESOLV, search, options) == want


def test_resolv_conf_bad_dns():
    with pytest.raises(InvalidArgument, match="nope is not an ip address"):
        etc_files.resolv_conf_text(["nope"], "")

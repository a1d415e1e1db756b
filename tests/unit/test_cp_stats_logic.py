"""Pure pieces of cp / diff / stats / prune (issue 14): table-driven."""

from __future__ import annotations

import base64
import io
import json
import os
import stat
import tarfile
from pathlib import Path

import pytest

from aiorun.engine.buildprune import prune_cache
from aiorun.engine.containers.archive import go_file_mode, split_request_path, stat_header
from aiorun.engine.containers.tarwrite import write_tar
from aiorun.engine.containers.changes import diff_changes, image_paths
from aiorun.engine.containers.fsview import FsView, Mount
from aiorun.engine.containers.stats import docker_sample, parse_net_dev, system_cpu_ns
from aiorun.errors import InvalidArgument
from aiorun.images.prune_filters import image_prune_plan, parse_go_duration, parse_timestamp
from aiorun.runtime.cgroup_stats import parse_blkio_v1, parse_flat_keyed, parse_io_stat_v2


@pytest.mark.parametrize("mode,want", [
    (stat.S_IFDIR | 0o755, (1 << 31) | 0o755),
    (stat.S_IFLNK | 0o777, (1 << 27) | 0o777),
    (stat.S_IFREG | 0o644, 0o644),
    (stat.S_IFREG | stat.S_ISUID | 0o755, (1 << 23) | 0o755),
    (stat.S_IFDIR | stat.S_ISVTX | 0o777, (1 << 31) | (1 << 20) | 0o777),
    (stat.S_IFCHR | 0o666, (1 << 26) | (1 << 21) | 0o666),
    (stat.S_IFIFO | 0o600, (1 << 25) | 0o600),
])
def test_go_file_mode(mode, want):
    assert go_file_mode(mode) == want


@pytest.mark.parametrize("path,want", [
    ("/a/b", ("/a/b", False, "b")),
    ("a/b/", ("/a/b", True, "b")),
    ("/a/b/.", ("/a/b", True, ".")),
    ("/", ("/", True, "/")),
    ("/a/../../etc", ("/etc", False, "etc")),
])
def test_split_request_path(path, want):
    assert split_request_path(path) == want


def test_split_request_path_empty():
    with pytest.raises(InvalidArgument, match="Path cannot be empty"):
        split_request_path("")


def test_stat_header_is_base64_json(tmp_path: Path):
    (tmp_path / "f").write_text("abc")
    doc = json.loads(base64.b64decode(stat_header("f", os.lstat(tmp_path / "f"), "")))
    assert doc["name"] == "f" and doc["size"] == 3 and doc["mode"] == 0o644 & ~0o022 | \
        (doc["mode"] & 0o777) and doc["mtime"].endswith("Z")


@pytest.fixture
def view(tmp_path: Path) -> FsView:
    root, vol = tmp_path / "root", tmp_path / "vol"
    for d in ("etc", "data/sub", "hostile", "mnt/vol"):   # mount points exist (runtime)
        (root / d).mkdir(parents=True)
    vol.mkdir()
    (vol / "v").write_text("in volume")
    (root / "data/sub/f").write_text("f")
    os.symlink("/", root / "rootlink")
    os.symlink("../../../../../../../..", root / "hostile/up")
    os.symlink("/data/sub", root / "data/lnk")
    os.symlink("/mnt/vol/v", root / "tovol")
    return FsView(str(root), [Mount("/mnt/vol", str(vol), rw=False)])


@pytest.mark.parametrize("path,follow,cpath,in_vol", [
    ("/data/lnk", False, "/data/lnk", False),
    ("/data/lnk", True, "/data/sub", False),
    ("/data/lnk/f", False, "/data/sub/f", False),
    ("/rootlink/etc", True, "/etc", False),
    ("/hostile/up/etc/passwd", True, "/etc/passwd", False),
    ("/../../..", True, "/", False),
    ("/mnt/vol/v", True, "/mnt/vol/v", True),
    ("/tovol", True, "/mnt/vol/v", True),
])
def test_fsview_resolves_in_scope(view: FsView, path, follow, cpath, in_vol):
    r = view.resolve(path, follow_last=follow)
    assert r.cpath == cpath
    assert (r.mount is not None) == in_vol
    assert ".." not in r.parts and r.host.startswith(os.path.dirname(view.rootfs))
    assert r.writable != in_vol


def test_write_tar_includes_mounts_and_keeps_links(view: FsView):
    buf = io.BytesIO()
    write_tar(view, view.resolve("/", True), "/", buf)
    buf.seek(0)
    with tarfile.open(fileobj=buf) as t:
        names = {m.name: m for m in t}
    vol = [m for n, m in names.items() if n.lstrip("/") == "mnt/vol/v"]
    assert vol and vol[0].isreg() and vol[0].size == len("in volume")
    assert any(n.endswith("data/lnk") and m.issym() and m.linkname == "/data/sub"
               for n, m in names.items())


def _layer(tmp: Path, name: str, entries: list[str]) -> Path:
    p = tmp / name
    with tarfile.open(p, "w") as t:
        for e in entries:
            ti = tarfile.TarInfo(e.rstrip("/"))
            ti.type = tarfile.DIRTYPE if e.endswith("/") else tarfile.REGTYPE
            t.addfile(ti, io.BytesIO(b""))
    return p


def test_image_paths_and_changes(tmp_path: Path):
    l1 = _layer(tmp_path, "l1", ["bin/", "bin/ls", "bin/sh", "etc/", "etc/passwd", "opt/",
                                 "opt/x/", "opt/x/y"])
    l2 = _layer(tmp_path, "l2", ["bin/", "bin/.wh.ls", "opt/", "opt/x/", "opt/x/.wh..wh..opq"])
    paths = image_paths([l1, l2])
    assert "bin/ls" not in paths and "bin/sh" in paths and "opt/x/y" not in paths
    got = diff_changes(["etc/", "etc/passwd", "etc/new", "bin/", "bin/.wh.sh", "etc/hosts",
                        "tmp/", "tmp/a"], paths)
    assert got == [{"Path": "/bin", "Kind": 0}, {"Path": "/bin/sh", "Kind": 2},
                   {"Path": "/etc", "Kind": 0}, {"Path": "/etc/new", "Kind": 1},
                   {"Path": "/etc/passwd", "Kind": 0}, {"Path": "/tmp", "Kind": 1},
                   {"Path": "/tmp/a", "Kind": 1}]


NET_DEV = """Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     100       2    0    0    0     0          0         0      100       2    0    0    0     0       0          0
  eth0:    1500      10    1    2    0     0          0         0      700       5    3    4    0     0       0          0
"""


def test_parse_net_dev():
    assert parse_net_dev(NET_DEV) == {"eth0": {
        "rx_bytes": 1500, "rx_packets": 10, "rx_errors": 1, "rx_dropped": 2,
        "tx_bytes": 700, "tx_packets": 5, "tx_errors": 3, "tx_dropped": 4}}


def test_system_cpu_ns():
    tick = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    assert system_cpu_ns("cpu  1 2 3 4 5 6 7 8 9 10\ncpu0 1 1 1 1 1 1 1 1\n") == 36 * tick


def test_docker_sample_shapes():
    raw = {"cpu_usage_ns": 5, "cpu_user_ns": 3, "cpu_system_ns": 2, "percpu_ns": [2, 3],
           "memory_usage": 100, "memory_limit": None, "memory_stat": {"cache": 1},
           "memory_max_usage": 200, "pids": [1, 2], "pids_current": 2, "pids_limit": None,
           "blkio": [{"major": 8, "minor": 0, "op": "Read", "value": 4}],
           "throttling": {"periods": 1}}
    s = docker_sample(raw, 1000, 2, 4096, {})
    assert s["cpu_stats"]["cpu_usage"] == {"total_usage": 5, "usage_in_kernelmode": 2,
                                           "usage_in_usermode": 3, "percpu_usage": [2, 3]}
    assert s["memory_stats"] == {"usage": 100, "stats": {"cache": 1}, "limit": 4096,
                                 "max_usage": 200}
    assert s["pids_stats"] == {"current": 2} and "networks" not in s
    assert s["blkio_stats"]["io_service_bytes_recursive"][0]["value"] == 4
    # an older spawner answers only the basic keys: still a valid document
    old = docker_sample({"cpu_usage_ns": 9, "memory_usage": 1, "memory_limit": 2,
                         "pids": [5]}, 1, 1, 8, {"eth0": {}})
    assert old["pids_stats"] == {"current": 1} and old["memory_stats"]["limit"] == 2


def test_cgroup_parsers():
    assert parse_flat_keyed("user 5\nsystem 7\nbad x\n") == {"user": 5, "system": 7}
    assert parse_blkio_v1("8:0 Read 10\n8:0 Write 20\nTotal 30\n") == [
        {"major": 8, "minor": 0, "op": "Read", "value": 10},
        {"major": 8, "minor": 0, "op": "Write", "value": 20}]
    assert parse_io_stat_v2("254:0 rbytes=1 wbytes=2 rios=3\n") == [
        {"major": 254, "minor": 0, "op": "read", "value": 1},
        {"major": 254, "minor": 0, "op": "write", "value": 2}]


@pytest.mark.parametrize("text,secs", [("1h", 3600), ("14m30s", 870), ("1.5h", 5400),
                                       ("-2s", -2), ("0", 0), ("500ms", 0.5),
                                       ("1x", None), ("h", None), ("", None), ("1h 2m", None)])
def test_go_duration(text, secs):
    assert parse_go_duration(text) == secs


def test_parse_timestamp():
    assert parse_timestamp("1h", 10_000) == 6400
    assert parse_timestamp("1700000000", 0) == 1_700_000_000
    assert parse_timestamp("2023-11-14T22:13:20Z", 0) == 1_700_000_000
    with pytest.raises(InvalidArgument):
        parse_timestamp("yesterday", 0)


NOW = 1_000_000.0


@pytest.mark.parametrize("filters,created_ago,labels,all_images,removed", [
    ({}, 10, {}, False, True),
    ({"dangling": {"false": True}}, 10, {}, True, True),
    # the data-loss bug: -a --filter until=1h must keep an image made 14 minutes ago
    ({"dangling": ["false"], "until": ["1h"]}, 14 * 60, {}, True, False),
    ({"dangling": ["false"], "until": ["1h"]}, 2 * 3600, {}, True, True),
    ({"label": ["a"]}, 10, {"a": "1"}, False, True),
    ({"label": ["a=2"]}, 10, {"a": "1"}, False, False),
    ({"label!": ["a"]}, 10, {"a": "1"}, False, False),
    ({"label!": ["a"]}, 10, {}, False, True),
])
def test_image_prune_plan(filters, created_ago, labels, all_images, removed):
    a, matches = image_prune_plan(filters, NOW)
    assert a == all_images and matches(NOW - created_ago, labels) is removed


@pytest.mark.parametrize("filters,msg", [({"reference": ["x"]}, "invalid filter 'reference'"),
                                         ({"dangling": ["maybe"]}, "dangling=maybe"),
                                         ({"until": ["soon"]}, "time or duration")])
def test_image_prune_bad_filters(filters, msg):
    with pytest.raises(InvalidArgument, match=msg):
        image_prune_plan(filters, NOW)


def test_build_prune(tmp_path: Path):
    for name, age in (("old", 7200), ("new", 10)):
        (tmp_path / name).write_text("{}")
        os.utime(tmp_path / name, (NOW - age, NOW - age))
    got = prune_cache(tmp_path, {"until": {"1h": True}}, NOW)
    assert got == {"CachesDeleted": ["old"], "SpaceReclaimed": 2}
    assert prune_cache(tmp_path, {}, NOW)["CachesDeleted"] == ["new"]
    assert prune_cache(tmp_path / "none", None, NOW) == {"CachesDeleted": None,
                                                         "SpaceReclaimed": 0}
    with pytest.raises(InvalidArgument, match="invalid filter 'label'"):
        prune_cache(tmp_path, {"label": ["x"]}, NOW)


@pytest.mark.parametrize("spec,want", [("db", ("db", "db")), ("db:data", ("db", "data")),
                                       ("/db:/web/data", ("db", "data")),
                                       ("/db", ("db", "db"))])
def test_parse_link(spec, want):
    from aiorun.engine.containers.links import parse_link
    assert parse_link(spec) == want


@pytest.mark.parametrize("spec", ["", ":", "a/b:c", "/"])
def test_parse_link_refuses(spec):
    from aiorun.engine.containers.links import parse_link
    with pytest.raises(InvalidArgument):
        parse_link(spec)


def test_link_env():
    from aiorun.engine.containers.links import env_for
    env = env_for("my-db", "/web", "10.0.0.2", {"80/tcp": {}, "53/udp": {}},
                  ["PATH=/bin", "HOME=/root", "A=1=2", "NOVALUE"])
    assert env == ["MY_DB_NAME=/web/my-db", "MY_DB_PORT=udp://10.0.0.2:53",
                   "MY_DB_PORT_53_UDP=udp://10.0.0.2:53", "MY_DB_PORT_53_UDP_ADDR=10.0.0.2",
                   "MY_DB_PORT_53_UDP_PORT=53", "MY_DB_PORT_53_UDP_PROTO=udp",
                   "MY_DB_PORT_80_TCP=tcp://10.0.0.2:80", "MY_DB_PORT_80_TCP_ADDR=10.0.0.2",
                   "MY_DB_PORT_80_TCP_PORT=80", "MY_DB_PORT_80_TCP_PROTO=tcp",
                   "MY_DB_ENV_A=1=2"]


@pytest.mark.parametrize("n,binary,decimal", [(0, "0B", "0B"), (1536, "1.5KiB", "1.54kB"),
                                              (5 * 1024 ** 3, "5GiB", "5.37GB")])
def test_stats_sizes(n, binary, decimal):
    from aiorun.cli.stats import bytes_size, human_size
    assert bytes_size(n) == binary and human_size(n) == decimal


def test_stats_row():
    from aiorun.cli.stats import row
    prev = {"cpu_stats": {"cpu_usage": {"total_usage": 1_000}, "system_cpu_usage": 10_000}}
    doc = {"id": "a" * 64, "name": "/web", "pids_stats": {"current": 3},
           "cpu_stats": {"cpu_usage": {"total_usage": 3_000}, "system_cpu_usage": 20_000,
                         "online_cpus": 2},
           "memory_stats": {"usage": 2048, "limit": 4096,
                            "stats": {"total_inactive_file": 1024}},
           "networks": {"eth0": {"rx_bytes": 1000, "tx_bytes": 2000}},
           "blkio_stats": {"io_service_bytes_recursive": [
               {"op": "Read", "value": 5}, {"op": "write", "value": 7}]}}
    r = row("web", doc, prev)
    assert r == {"Container": "web", "ID": "a" * 12, "Name": "web", "CPUPerc": "40.00%",
                 "MemUsage": "1KiB / 4KiB", "MemPerc": "25.00%", "NetIO": "1kB / 2kB",
                 "BlockIO": "5B / 7B", "PIDs": "3"}


def test_network_prune_until():
    from aiorun.images.prune_filters import network_prune_until
    assert network_prune_until({}, NOW) is None
    assert network_prune_until({"until": ["1h"], "label": ["a"]}, NOW) == NOW - 3600
    with pytest.raises(InvalidArgument, match="invalid filter 'dangling'"):
        network_prune_until({"dangling": ["true"]}, NOW)


@pytest.mark.parametrize("name,top,rel", [("d", "d", ""), ("d/", "d", ""), ("d/x/y", "d", "x/y"),
                                          ("dd/x", "d", None), ("./", ".", ""),
                                          ("./x", ".", "x"), ("/", "/", ""), ("/bin", "/", "bin"),
                                          ("other", "d", None)])
def test_cli_cp_rel_under(name, top, rel):
    from aiorun.cli.cp import rel_under
    assert rel_under(name, top) == rel


def _files(d: Path, files: dict[str, str]) -> str:
    d.mkdir(parents=True)
    for k, v in files.items():
        (d / k).write_text(v)
    return str(d)


def test_cgroup_detail_v1_and_v2(tmp_path: Path):
    from aiorun.runtime.cgroup_layout import CgroupDir
    from aiorun.runtime.cgroup_stats import CLK_TCK, detail
    tick = 1_000_000_000 // CLK_TCK
    v1 = [CgroupDir(1, ("cpuacct",), _files(tmp_path / "cpuacct", {
              "cpuacct.stat": "user 10\nsystem 5\n", "cpuacct.usage_percpu": "7 8 \n"}), ""),
          CgroupDir(1, ("cpu",), _files(tmp_path / "cpu", {
              "cpu.stat": "nr_periods 4\nnr_throttled 1\nthrottled_time 99\n"}), ""),
          CgroupDir(1, ("memory",), _files(tmp_path / "memory", {
              "memory.stat": "cache 1\ntotal_inactive_file 2\n",
              "memory.max_usage_in_bytes": "300\n", "memory.failcnt": "0\n"}), ""),
          CgroupDir(1, ("pids",), _files(tmp_path / "pids", {"pids.current": "3\n",
                                                              "pids.max": "max\n"}), ""),
          CgroupDir(1, ("blkio",), _files(tmp_path / "blkio", {
              "blkio.throttle.io_service_bytes_recursive": "8:0 Read 4\n8:0 Write 6\n"
                                                           "8:0 Total 10\nTotal 10\n"}), "")]
    d = detail(v1)
    assert (d["cpu_user_ns"], d["cpu_system_ns"], d["percpu_ns"]) == (10 * tick, 5 * tick,
                                                                      [7, 8])
    assert d["throttling"] == {"periods": 4, "throttled_periods": 1, "throttled_time": 99}
    assert d["memory_stat"]["total_inactive_file"] == 2 and d["memory_max_usage"] == 300
    assert (d["pids_current"], d["pids_limit"], d["cgroup_version"]) == (3, None, 1)
    assert [e["op"] for e in d["blkio"]] == ["Read", "Write"]
    v2 = [CgroupDir(2, (), _files(tmp_path / "v2", {
        "cpu.stat": "usage_usec 30\nuser_usec 20\nsystem_usec 10\nnr_periods 2\n"
                    "nr_throttled 0\nthrottled_usec 5\n",
        "memory.stat": "anon 5\ninactive_file 1\n", "pids.current": "2\n", "pids.max": "50\n",
        "io.stat": "8:0 rbytes=7 wbytes=9 rios=1 wios=1\n"}), "", "",
        ("cpu", "memory", "pids", "io"))]
    d = detail(v2)
    assert (d["cpu_user_ns"], d["cpu_system_ns"]) == (20_000, 10_000)
    assert d["throttling"]["throttled_time"] == 5_000 and d["memory_stat"]["anon"] == 5
    assert (d["pids_current"], d["pids_limit"], d["cgroup_version"]) == (2, 50, 2)
    assert d["blkio"] == [{"major": 8, "minor": 0, "op": "read", "value": 7},
                          {"major": 8, "minor": 0, "op": "write", "value": 9}]

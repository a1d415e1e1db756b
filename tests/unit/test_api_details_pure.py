"""Pure pieces behind the API details clients trip on: detach keys, stream media types,
listen addresses, the networks shown before a start, volume subpaths, dockerd metric names."""

import pytest

from aiorun.api.http import Request
from aiorun.api.listen import ListenAddress, TlsSettings, check_listen, parse_host
from aiorun.api.streams import MULTIPLEXED, RAW, media_type_for
from aiorun.bus.subscribers.metrics import Metrics
from aiorun.core.container_views import planned_networks
from aiorun.core.detachkeys import EscapeMatcher, parse_detach_keys
from aiorun.core.events import Event
from aiorun.core.mounts import from_api_mount, parse_mount_flag
from aiorun.errors import InvalidArgument


@pytest.mark.parametrize("spec,keys", [
    ("ctrl-p,ctrl-q", b"\x10\x11"), ("ctrl-a", b"\x01"), ("a,b", b"ab"),
    ("ctrl-@,ctrl-[,ctrl-\\,ctrl-],ctrl-^,ctrl-_", bytes([0, 27, 28, 29, 30, 31])),
    ("CTRL-Z", b"\x1a"),
])
def test_parse_detach_keys(spec, keys):
    assert parse_detach_keys(spec) == keys


@pytest.mark.parametrize("spec", ["", "ctrl-", "ctrl-1", "ab", "ctrl-pp", "é"])
def test_parse_detach_keys_refuses(spec):
    with pytest.raises(InvalidArgument, match="Invalid detach keys"):
        parse_detach_keys(spec)


@pytest.mark.parametrize("chunks,forwarded,detached", [
    ([b"ls\r"], b"ls\r", False),
    ([b"ab\x10\x11cd"], b"ab", True),
    ([b"ab\x10", b"\x11"], b"ab", True),                 # split across reads
    ([b"\x10x"], b"\x10x", False),                        # broken sequence: forwarded
    ([b"\x10", b"\x10\x11"], b"\x10", True),               # restarts on its first key
    ([b"\x10"], b"", False),                              # held until we know
])
def test_escape_matcher(chunks, forwarded, detached):
    m = EscapeMatcher(b"\x10\x11")
    out, hit = b"", False
    for c in chunks:
        data, hit = m.feed(c)
        out += data
        if hit:
            break
    assert (out, hit) == (forwarded, detached)


def test_escape_matcher_disabled():
    assert EscapeMatcher(b"").feed(b"\x10\x11") == (b"\x10\x11", False)


@pytest.mark.parametrize("version,tty,expected", [
    (None, False, MULTIPLEXED), ("1.47", False, MULTIPLEXED), ("1.42", False, MULTIPLEXED),
    ("1.41", False, RAW), ("1.24", False, RAW), (None, True, RAW), ("1.47", True, RAW),
])
def test_stream_media_type(version, tty, expected):
    req = Request("POST", "/exec/x/start")
    req.api_version = version
    assert media_type_for(req, tty) == expected


@pytest.mark.parametrize("spec,tls,expected", [
    ("unix:///run/x.sock", False, ListenAddress("unix", path="/run/x.sock")),
    ("tcp://127.0.0.1:2376", False, ListenAddress("tcp", host="127.0.0.1", port=2376)),
    ("tcp://127.0.0.1", False, ListenAddress("tcp", host="127.0.0.1", port=2375)),
    ("tcp://127.0.0.1", True, ListenAddress("tcp", host="127.0.0.1", port=2376)),
    ("tcp://[::1]:23", False, ListenAddress("tcp", host="::1", port=23)),
    ("tcp://:2376", True, ListenAddress("tcp", host="0.0.0.0", port=2376)),
])
def test_parse_host(spec, tls, expected):
    assert parse_host(spec, tls) == expected


def test_check_listen():
    verify = TlsSettings(True, True, "ca", "c", "k")
    assert check_listen(parse_host("tcp://0.0.0.0:2376"), verify) is None
    assert "plain TCP" in (check_listen(parse_host("tcp://127.0.0.1:2375"), TlsSettings())
                           or "")
    assert check_listen(parse_host("unix:///x"), TlsSettings()) is None
    for host in ("tcp://0.0.0.0:2375", "tcp://192.0.2.1:2375", "tcp://example.com:2375"):
        with pytest.raises(InvalidArgument, match="without --tlsverify"):
            check_listen(parse_host(host), TlsSettings())
        with pytest.raises(InvalidArgument, match="without --tlsverify"):
            check_listen(parse_host(host), TlsSettings(enabled=True, cert="c", key="k"))


def test_planned_networks():
    ids = {"bridge": "b" * 64, "web": "w" * 64}.get
    nets = planned_networks({"NetworkMode": "bridge"},
                            {"EndpointsConfig": {"default": {"Aliases": ["a"]}}},
                            lambda n: ids(n) or "")
    assert list(nets) == ["bridge"] and nets["bridge"]["NetworkID"] == "b" * 64
    assert nets["bridge"]["Aliases"] == ["a"] and nets["bridge"]["IPAddress"] == ""
    nets = planned_networks({"NetworkMode": "web"}, {"EndpointsConfig": {"other": {}}},
                            lambda n: ids(n) or "")
    assert list(nets) == ["web", "other"] and nets["other"]["NetworkID"] == ""
    assert planned_networks({"NetworkMode": "container:x"}, {}, lambda n: "") == {}


@pytest.mark.parametrize("subpath,expected", [
    ("a/b", "a/b"), ("a/./b/", "a/b"), (".", ""), ("a/../b", "b"),
])
def test_volume_subpath(subpath, expected):
    m = from_api_mount({"Type": "volume", "Source": "vol", "Target": "/x",
                        "VolumeOptions": {"Subpath": subpath}})
    assert m.subpath == expected


@pytest.mark.parametrize("subpath", ["/abs", "..", "../x", "a/../../x"])
def test_volume_subpath_refused(subpath):
    with pytest.raises(InvalidArgument, match="relative path within the volume"):
        from_api_mount({"Type": "volume", "Source": "vol", "Target": "/x",
                        "VolumeOptions": {"Subpath": subpath}})


def test_mount_flag_volume_subpath():
    m = parse_mount_flag("type=volume,source=vol,target=/x,volume-subpath=sub/dir")
    assert m["VolumeOptions"] == {"Subpath": "sub/dir"}


def test_dockerd_metric_names():
    m = Metrics({"version": "1.0", "kernel": "6.1"})
    m.handle(Event(seq=1, time_ns=1, type="container", action="create", id="c1", attrs={}))
    m.handle(Event(seq=2, time_ns=2_000_000, type="container", action="start", id="c1",
                   attrs={}))
    m.handle(Event(seq=3, time_ns=3, type="container", action="create", id="c2", attrs={}))
    text = m.render()
    assert 'engine_daemon_engine_info{kernel="6.1",version="1.0"} 1' in text
    assert 'engine_daemon_container_states_containers{state="running"} 1' in text
    assert 'engine_daemon_container_states_containers{state="stopped"} 1' in text
    assert 'engine_daemon_container_actions_seconds_count{action="start"} 1' in text
    assert "engine_daemon_events_total 3" in text

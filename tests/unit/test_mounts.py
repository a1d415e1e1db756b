import pytest

from aiorun.core.mounts import (collect, from_api_mount, parse_mount_flag, parse_size,
                                parse_tmpfs_flag, parse_volume_flag)
from aiorun.errors import InvalidArgument


def test_anonymous():
    r = parse_volume_flag("/test")
    assert (r.type, r.source, r.destination, r.anonymous) == ("volume", "", "/test", True)


def test_named_with_ro():
    r = parse_volume_flag("data:/srv/data/:ro")
    assert (r.type, r.source, r.destination, r.readonly, r.mode) == \
        ("volume", "data", "/srv/data", True, "ro")


def test_bind_creates_host_path_and_defaults_rprivate():
    r = parse_volume_flag("/home//x/:/test:rw,rslave")
    assert r.type == "bind" and r.source == "/home/x" and r.destination == "/test"
    assert not r.readonly and r.propagation == "rslave" and r.create_host_path


@pytest.mark.parametrize("spec,msg", [
    ("", "empty"),
    ("test", "not an absolute path"),
    ("/", "can't be '/'"),
    ("a:b:c:d", "too many colons"),
    (":/x", "empty source"),
    ("./rel:/x", "relative"),
    ("bad name:/x", "invalid characters"),
    ("v:/x:ro,rw", "twice"),
    ("v:/x:bogus", "unknown option 'bogus'"),
    ("vv:/x:rslave", "binds only"),
    ("/h:/x:nocopy", "volumes only"),
    ("v:rel", "not an absolute path"),
    ("v:/x:", "empty options"),
])
def test_bad_volume_specs(spec, msg):
    with pytest.raises(InvalidArgument) as ei:
        parse_volume_flag(spec)
    assert msg in ei.value.message


def test_mount_flag_bind():
    m = parse_mount_flag("type=bind,source=/home,target=/test,readonly,bind-propagation=shared")
    assert m == {"Type": "bind", "Source": "/home", "Target": "/test", "ReadOnly": True,
                 "BindOptions": {"Propagation": "shared"}}
    r = from_api_mount(m)
    assert r.type == "bind" and r.readonly and not r.create_host_path


def test_mount_flag_volume_and_tmpfs():
    m = parse_mount_flag("type=volume,src=vol1,dst=/d,volume-nocopy,volume-label=a=b")
    r = from_api_mount(m)
    assert r.source == "vol1" and r.nocopy and r.labels == {"a": "b"}
    t = from_api_mount(parse_mount_flag("type=tmpfs,target=/t,tmpfs-size=64m,tmpfs-mode=1777"))
    assert t.type == "tmpfs" and t.tmpfs_size == 64 << 20 and t.tmpfs_mode == 0o1777


@pytest.mark.parametrize("spec,msg", [
    ("type=foo,target=/x", "type must be"),
    ("type=bind,target=/x", "source is required"),
    ("type=bind,source=rel,target=/x", "not an absolute path"),
    ("type=volume,source=/x", "target is required"),
    ("type=tmpfs,source=x,target=/t", "takes no source"),
    ("type=tmpfs,target=/t,tmpfs-size=12q", "invalid size"),
    ("type=volume,target=/t,colour=blue", "unknown field 'colour'"),
    ("type=volume,target=/t,readonly=maybe", "true or false"),
    ("type=bind,source=/a,target=/t,volume-nocopy", "on a bind"),
])
def test_bad_mount_flags(spec, msg):
    with pytest.raises(InvalidArgument) as ei:
        parse_mount_flag(spec)
    assert msg in ei.value.message


def test_collect_dedup_and_image_volumes():
    reqs = collect(["vv:/data"], [{"Type": "tmpfs", "Target": "/t"}], ["/data", "/other"])
    assert [(r.type, r.destination, r.source) for r in reqs] == \
        [("volume", "/data", "vv"), ("tmpfs", "/t", ""), ("volume", "/other", "")]
    with pytest.raises(InvalidArgument, match="duplicate mount point: /x"):
        collect(["/x", "ab:/x"], None)


def test_sizes_and_tmpfs_flag():
    assert parse_size("1g") == 1 << 30 and parse_size("512") == 512 and parse_size("2kb") == 2048
    assert parse_tmpfs_flag("/run:size=1m,mode=700") == \
        {"Type": "tmpfs", "Target": "/run", "TmpfsOptions": {"SizeBytes": 1 << 20, "Mode": 0o700}}

"""Mount requests → runtime MountSpecs."""

from __future__ import annotations

from aiorun.core.mounts import MountRequest
from aiorun.engine.volume_mounts import bind_spec, tmpfs_spec, volume_spec


def test_bind_and_tmpfs():
    b = bind_spec(MountRequest("bind", "/dst", "/src", readonly=True, propagation="rslave"))
    assert (b.destination, b.type, b.source, b.options) == (
        "/dst", "bind", "/src", ["rbind", "rslave", "ro"])
    t = tmpfs_spec(MountRequest("tmpfs", "/t", tmpfs_size=1024, tmpfs_mode=0o1777))
    assert t.options == ["size=1024", "mode=1777", "nosuid", "nodev"]


def test_volume_by_options():
    r = MountRequest("volume", "/data", "v1")
    assert volume_spec({"Options": None}, r, "/vols/v1/_data").source == "/vols/v1/_data"
    tm = volume_spec({"Options": {"type": "tmpfs", "o": "size=1m"}}, r, "/x")
    assert tm.type == "tmpfs" and tm.options == ["size=1m", "nosuid", "nodev"]
    bd = volume_spec({"Options": {"type": "none", "o": "bind", "device": "/srv"}}, r, "/x")
    assert (bd.type, bd.source, bd.options) == ("bind", "/srv", ["rbind", "rprivate"])

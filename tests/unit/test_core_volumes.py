"""The pure volume rules: local-driver options, filters, the Docker shape."""

from __future__ import annotations

import pytest

from aiorun.core.volumes import check_local_options, docker_shape, matches, prune_includes_named
from aiorun.errors import InvalidArgument

META = {"Name": "data-1", "CreatedAt": "2024-01-01T00:00:00Z", "Labels": {"tier": "db"},
        "Options": {}, "Anonymous": False, "Populated": True}


def test_local_options(tmp_path):
    assert check_local_options({}) == {}
    assert check_local_options({"type": "tmpfs", "o": "size=64m,uid=1"}) == {
        "type": "tmpfs", "device": "tmpfs", "o": "size=64m,uid=1"}
    got = check_local_options({"type": "none", "o": "bind", "device": f"{tmp_path}/./"})
    assert got == {"type": "none", "device": str(tmp_path), "o": "bind"}
    for bad in ({"type": "nfs"}, {"colour": "red"}, {"type": "tmpfs", "o": "huge=1"},
                {"type": "tmpfs", "device": "/dev/sda"}, {"type": "none", "device": "/x"},
                {"type": "none", "o": "bind", "device": f"{tmp_path}/missing"}):
        with pytest.raises(InvalidArgument):
            check_local_options(bad)


@pytest.mark.parametrize("filters, in_use, expected", [
    ({}, False, True),
    ({"name": ["data"]}, False, True),
    ({"name": ["web"]}, False, False),
    ({"driver": ["local"]}, False, True),
    ({"driver": {"nfs": True}}, False, False),
    ({"dangling": ["true"]}, False, True),
    ({"dangling": ["true"]}, True, False),
    ({"dangling": ["false"]}, True, True),
    ({"label": ["tier"]}, False, True),
    ({"label": ["tier=db"]}, False, True),
    ({"label": ["tier=web"]}, False, False),
    ({"label!": ["tier"]}, False, False),
    ({"all": ["true"]}, False, True),
])
def test_matches(filters, in_use, expected):
    assert matches(META, filters, in_use) is expected


def test_unknown_filter_and_prune_all():
    with pytest.raises(InvalidArgument):
        matches(META, {"colour": ["red"]}, False)
    assert prune_includes_named({"all": ["true"]}) and prune_includes_named({"all": {"1": True}})
    assert not prune_includes_named({}) and not prune_includes_named({"all": ["false"]})


def test_docker_shape():
    assert docker_shape(META, "/v/data-1/_data") == {
        "CreatedAt": "2024-01-01T00:00:00Z", "Driver": "local", "Labels": {"tier": "db"},
        "Mountpoint": "/v/data-1/_data", "Name": "data-1", "Options": None, "Scope": "local"}

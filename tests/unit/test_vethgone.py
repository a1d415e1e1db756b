"""The bridge driver's detach of an exited container's veth (plugins/network/bridge/vethgone)."""

from __future__ import annotations

import os

import anyio
import pytest

from aiorun_plugins.network.bridge import vethgone


@pytest.mark.parametrize("path, ok", [
    ("/proc/self/ns/net", False),          # not a pid: never recorded
    ("/proc/1x/ns/net", False),
    ("/proc/123/ns/mnt", False),
    ("/run/netns/foo", False),
    ("", False),
    (f"/proc/{os.getpid()}/ns/net", True),
])
def test_owner_of(path: str, ok: bool) -> None:
    owner = vethgone.owner_of(path)
    assert bool(owner) is ok
    if ok:
        assert owner == f"{os.getpid()}:{os.stat(path).st_ino}"


def test_owner_gone() -> None:
    me = vethgone.owner_of(f"/proc/{os.getpid()}/ns/net")
    assert vethgone.owner_gone(me) is False
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    ino = os.stat("/proc/self/ns/net").st_ino
    assert vethgone.owner_gone(f"{pid}:{ino}") is True           # exited
    assert vethgone.owner_gone(f"{os.getpid()}:{ino + 1}") is True  # pid holds another netns
    for bad in ("", "x:1", "1:x", "12"):
        assert vethgone.owner_gone(bad) is False                 # unknown: delete as before


def test_link_exists() -> None:
    assert vethgone.link_exists("lo")
    assert not vethgone.link_exists("aiorNoSuchLnk")


def _calls(monkeypatch) -> list:
    calls: list = []

    async def fake_run(fn, *args):
        calls.append((fn.__name__, args))
        return True
    monkeypatch.setattr(vethgone.nl, "run", fake_run)
    return calls


def test_gone_owner_and_gone_link_deletes_nothing(monkeypatch) -> None:
    calls = _calls(monkeypatch)
    anyio.run(vethgone.remove_host_end, "aiorNoSuchLnk", "999999999:1")
    assert calls == []


def test_live_owner_deletes_now(monkeypatch) -> None:
    calls = _calls(monkeypatch)
    me = vethgone.owner_of(f"/proc/{os.getpid()}/ns/net")
    anyio.run(vethgone.remove_host_end, "aiorx", me)
    assert calls == [("delete_link", ("aiorx",))]


def test_unknown_owner_deletes_now(monkeypatch) -> None:
    calls = _calls(monkeypatch)
    anyio.run(vethgone.remove_host_end, "aiorx", "")
    assert calls == [("delete_link", ("aiorx",))]


def test_link_that_stays_is_deleted_after_the_bound(monkeypatch) -> None:
    calls = _calls(monkeypatch)                 # "lo" never goes away
    anyio.run(vethgone.remove_host_end, "lo", "999999999:1", 0.05)
    assert calls == [("delete_link", ("lo",))]

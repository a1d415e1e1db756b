"""Small cross-area fixes found in QA, each pinned by a test against the real thing."""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass

import anyio
import msgpack
import pytest

from aiorun.bus.bus import EventBus
from aiorun.bus.server import serve_bus
from aiorun.config import Paths

pytestmark = pytest.mark.integration


@dataclass
class FakeEngine:
    paths: Paths
    events: EventBus


@pytest.mark.anyio
async def test_bus_subscriber_gone_mid_stream_is_one_debug_line(aiorun_paths, caplog):
    """A subscriber that stops reading (here: shuts down its read side, so the server's next
    send fails with EPIPE) is not an error: one debug line, no traceback."""
    caplog.set_level(logging.DEBUG, logger="aiorun.bus")
    bus = EventBus.open(aiorun_paths.events)
    bus.emit("container", "create", "a")

    def subscribe_then_stop_reading() -> None:
        s = socket.socket(socket.AF_UNIX)
        s.connect(str(aiorun_paths.bus_socket))
        s.sendall(msgpack.packb({"t": "subscribe", "from_seq": 1}))
        u = msgpack.Unpacker(raw=False)
        while not any(m["t"] == "replay-done" for m in _feed(u, s.recv(65536))):
            pass
        s.shutdown(socket.SHUT_RD)  # the peer's sends now fail with EPIPE; no EOF for it
        done.append(s)

    done: list[socket.socket] = []
    async with anyio.create_task_group() as tg:
        await tg.start(serve_bus, FakeEngine(aiorun_paths, bus))
        await anyio.to_thread.run_sync(subscribe_then_stop_reading)
        for i in range(20):
            bus.emit("container", "start", f"c{i}")
            await anyio.sleep(0.01)
        with anyio.fail_after(5):
            while not any("went away" in r.getMessage() for r in caplog.records):
                await anyio.sleep(0.02)
        tg.cancel_scope.cancel()
    done[0].close()
    bus.close()
    bus_records = [r for r in caplog.records if r.name.startswith("aiorun.bus")]
    assert not [r for r in bus_records if r.levelno >= logging.WARNING], bus_records
    gone = [r for r in bus_records if "went away" in r.getMessage()]
    assert len(gone) == 1 and gone[0].levelno == logging.DEBUG and not gone[0].exc_info


def _feed(u: msgpack.Unpacker, data: bytes) -> list[dict]:
    u.feed(data)
    return list(u)


def _with_device_nodes(src, dst) -> None:
    """The busybox rootfs plus what a debootstrap tarball has under /dev."""
    import tarfile
    with tarfile.open(src) as tin, tarfile.open(dst, "w") as tout:
        for m in tin:
            if m.name.strip("./").startswith("dev/"):
                continue
            tout.addfile(m, tin.extractfile(m) if m.isreg() else None)
        for name, kind, dev in [("dev/null", tarfile.CHRTYPE, (1, 3)),
                                ("dev/console", tarfile.CHRTYPE, (5, 1)),
                                ("dev/sda", tarfile.BLKTYPE, (8, 0)),
                                ("run/initctl", tarfile.FIFOTYPE, None)]:
            ti = tarfile.TarInfo(name)
            ti.type, ti.mode = kind, 0o666
            if dev:
                ti.devmajor, ti.devminor = dev
            tout.addfile(ti)


@pytest.mark.parametrize("driver", ["overlay", "copy"])
def test_import_skips_device_nodes_and_says_so(aiorun_paths, host_state, busybox_tar, tmp_path,
                                               driver):
    import shutil
    import subprocess

    from aiorun.testing.daemon import run_cli, start_daemon
    tar = tmp_path / "debootstrap-like.tar"
    _with_device_nodes(busybox_tar, tar)
    d = start_daemon(aiorun_paths, storage_driver=driver)
    try:
        r = run_cli(aiorun_paths, "import", str(tar), "deb:1")
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip().startswith("sha256:") and len(r.stdout.splitlines()) == 1
        assert "skipped 3 device node(s)" in r.stderr
        # the same layer again (deduplicated, not re-extracted) reports the same count
        r = run_cli(aiorun_paths, "import", str(tar), "deb:2")
        assert r.returncode == 0 and "skipped 3 device node(s)" in r.stderr, r.stderr
        # the container gets the runtime's /dev, and the FIFO was kept
        r = run_cli(aiorun_paths, "run", "--rm", "--network", "none", "deb:1", "sh", "-c",
                    "test -c /dev/null && test -p /run/initctl && test ! -e /dev/sda && echo ok")
        assert r.returncode == 0 and r.stdout.strip() == "ok", (r.stdout, r.stderr)
        if shutil.which("docker"):  # docker's CLI ignores the aux message: stdout is the id
            r = subprocess.run(["docker", "-H", f"unix://{d.socket}", "import", str(tar)],
                               capture_output=True, text=True, timeout=60)
            assert r.returncode == 0 and r.stdout.strip().startswith("sha256:"), r.stderr
    finally:
        d.stop_all()



def test_hairpin_is_set_over_netlink_from_another_netns(tmp_path):
    """attach_veth in a daemon that runs in a network namespace of its own, with the host's
    sysfs still mounted (so /sys/class/net shows the host's links, not ours)."""
    import subprocess
    import sys
    code = r'''
import subprocess, sys
from aiorun.net import netlink as nl
subprocess.run(["ip", "link", "add", "aiorqa0", "type", "bridge"], check=True)
subprocess.run(["ip", "link", "set", "aiorqa0", "up"], check=True)
peer = subprocess.Popen(["unshare", "--net", "sleep", "30"])
try:
    import time
    while not open(f"/proc/{peer.pid}/cmdline", "rb").read().startswith(b"sleep"):
        time.sleep(0.01)  # exec'd: its netns is the new one
    res = nl.attach_veth(bridge="aiorqa0", host_ifname="aiorvqa",
                         netns_path=f"/proc/{peer.pid}/ns/net", cidr="10.251.0.2/24",
                         gateway="10.251.0.1", mac="02:42:0a:fb:00:02")
    print(res.ifname, nl.hairpin_mode("aiorvqa"), nl.hairpin_mode("no-such-port"))
finally:
    peer.kill(); peer.wait()
'''
    r = subprocess.run(["unshare", "--net", sys.executable, "-c", code], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["eth0", "True", "None"]

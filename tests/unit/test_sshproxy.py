"""The step's own agent socket (:mod:`aiorun.images.build.sshproxy`): relays bytes both ways,
owner/mode as asked, a long directory path, and nothing left after close()."""

import os
import socket
import stat
import threading
import time

from aiorun.images.build.sshproxy import AgentProxy


def test_relays_both_ways_then_closes(tmp_path):
    agent_path = tmp_path / "agent.sock"
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(str(agent_path))
    srv.listen(4)

    def echo() -> None:
        for _ in range(2):
            c, _ = srv.accept()
            with c:
                while data := c.recv(1024):
                    c.sendall(data.upper())
    t = threading.Thread(target=echo, daemon=True)
    t.start()
    deep = tmp_path / ("d" * 60) / ("e" * 60)     # longer than a socket address may be
    deep.mkdir(parents=True)
    proxy = AgentProxy(deep / "0", str(agent_path), 1000, 1001, 0o640)
    dfd = os.open(deep, os.O_PATH)
    try:
        st = os.stat(proxy.path)
        assert stat.S_ISSOCK(st.st_mode) and (st.st_uid, st.st_gid) == (1000, 1001)
        assert stat.S_IMODE(st.st_mode) == 0o640
        for word in (b"hello", b"again"):
            c = socket.socket(socket.AF_UNIX)
            c.connect(f"/proc/self/fd/{dfd}/0")
            c.sendall(word)
            c.shutdown(socket.SHUT_WR)
            assert c.recv(1024) == word.upper()
            c.close()
    finally:
        os.close(dfd)
        proxy.close()
        srv.close()
    assert not proxy.path.exists()
    for _ in range(100):     # the accept thread, woken by shutdown(), ends
        if not any(t.name == "aiorun-ssh-proxy" for t in threading.enumerate()):
            break
        time.sleep(0.02)
    assert not any(t.name == "aiorun-ssh-proxy" for t in threading.enumerate())

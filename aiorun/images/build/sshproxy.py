"""A RUN step's own ssh-agent socket with BuildKit's ``uid``/``gid``/``mode``.

``RUN --mount=type=ssh,uid=1000`` asks for the agent socket owned by 1000 (BuildKit's
defaults: uid 0, gid 0, mode 0600). The host agent's socket cannot be changed for that, so
the step gets a socket of its own, in the step's private work directory: :class:`AgentProxy`
listens there (owner and mode as asked) and relays each connection, byte for byte, to the
agent's socket, in daemon threads, until :meth:`AgentProxy.close`. Nothing is interpreted:
the agent protocol passes through unchanged.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path


class AgentProxy:
    """Listen on ``path`` (made here, ``uid``/``gid``/``mode``) and relay to ``agent``."""

    def __init__(self, path: Path, agent: str, uid: int, gid: int, mode: int) -> None:
        self.path = path
        self.agent = agent
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        self._srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        dfd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            # through the directory's fd: a work directory's path may be longer than a
            # socket address may be (108 bytes)
            self._srv.bind(f"/proc/self/fd/{dfd}/{path.name}")
            os.chown(path, uid, gid)
            os.chmod(path, mode)
            self._srv.listen(16)
        except BaseException:
            self._srv.close()
            raise
        finally:
            os.close(dfd)
        threading.Thread(target=self._accept, name="aiorun-ssh-proxy", daemon=True).start()

    def _track(self, *socks: socket.socket) -> bool:
        with self._lock:
            if self._closed:
                return False
            self._conns.update(socks)
            return True

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._srv.accept()
            except OSError:
                self._srv.close()           # shut down by close()
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                upstream.connect(self.agent)
            except OSError:
                client.close()
                upstream.close()
                continue
            if not self._track(client, upstream):
                client.close()
                upstream.close()
                self._srv.close()
                return
            left = [2]     # pumps still running; the last one closes both sockets
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b, left), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, left: list[int]) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        with self._lock:
            left[0] -= 1
            last = left[0] == 0
            if last:
                self._conns.discard(src)
                self._conns.discard(dst)
        if last:
            # closed only here, never while the other pump may still use the descriptor
            src.close()
            dst.close()

    def close(self) -> None:
        """Stop listening, end every relayed connection, remove the socket file. (Threads
        blocked on a socket are woken by shutdown(); each closes its own descriptors.)"""
        with self._lock:
            self._closed = True
            conns = list(self._conns)
        try:
            self._srv.shutdown(socket.SHUT_RDWR)     # wakes accept(): the thread closes it
        except OSError:
            pass
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

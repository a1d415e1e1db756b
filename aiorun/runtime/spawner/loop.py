"""The spawner's loop: one ``selectors`` loop over the listening socket, the clients, the
SIGCHLD wake-up pipe and every watched fd; framed replies and events to the clients, with
output backpressure (see ``CLIENT_HIGH``/``CLIENT_DROP``) and the idle exit.

One room of :class:`aiorun.runtime.spawner.Spawner` (a mixin over :class:`.base.SpawnerBase`).
"""

from __future__ import annotations

import os
import selectors
import sys
import time

from ..ops import Op
from ..proto import encode
from .base import SpawnerBase
from .common import CLIENT_DROP, CLIENT_HIGH, DEFERRED, Client, error_reply


class Loop(SpawnerBase):
    """Clients, frames and the select loop."""

    def _on_term(self, *_: object) -> None:
        self.stopping = True

    def run(self) -> None:
        while not self.stopping:
            events = self.sel.select(self.pool_timeout(1.0))
            for key, ev in events:
                kind, obj = key.data
                try:
                    if kind == "wake":
                        try:
                            while os.read(self.wake_r, 512):
                                pass
                        except BlockingIOError:
                            pass
                        self.reap()
                    elif kind == "accept":
                        self._accept()
                    elif kind == "client":
                        self._client_io(obj, ev)
                    elif kind == "out":
                        self._read_output(key.fd, obj)
                    elif kind == "stdin":
                        self._flush_stdin(obj)
                    elif kind == "pidfd":
                        self._adopted_exit(obj)
                    elif kind == "status":
                        self._status_io(obj)
                    elif kind == "pool":
                        self.pool_io(obj)
                except Exception as e:  # keep serving: one bad fd must not kill everyone
                    print(f"aiorun-spawner: {kind}: {e!r}", file=sys.stderr, flush=True)
            # SIGCHLD may have been coalesced while we handled other work.
            self.reap()
            self._check_timeouts()
            self._check_idle()
            self.pool_idle(bool(events))
        self.pool_drain()
        # Unlink first: a client arriving now starts a new spawner (it waits for our lock).
        try:
            os.unlink(os.path.join(self.run_dir, "spawner.sock"))
        except FileNotFoundError:
            pass
        self.listener.close()

    def _check_idle(self) -> None:
        """Exit after ``idle_exit`` seconds with no client and no process to look after
        (nothing is lost: the next Runtime.connect starts a spawner again), so daemons and
        test runs that never call shutdown_spawner do not leave spawners behind."""
        if self.idle_exit <= 0 or self.clients or self.procs or self.creating:
            self._idle_since = None
            return
        now = time.monotonic()
        if self._idle_since is None:
            self._idle_since = now
        elif now - self._idle_since >= self.idle_exit:
            self._accept()                # a client that just connected keeps us alive
            if not self.clients:
                self.stopping = True

    def _accept(self) -> None:
        try:
            s, _ = self.listener.accept()
        except BlockingIOError:
            return
        s.setblocking(False)
        c = Client(s)
        self.clients[s.fileno()] = c
        self.sel.register(s, selectors.EVENT_READ, ("client", c))

    def _drop_client(self, c: Client) -> None:
        self.clients.pop(c.sock.fileno(), None)
        try:
            self.sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        c.sock.close()
        if not self.clients:
            self.pool_drain()             # warm sandboxes live only while someone uses us

    def _client_io(self, c: Client, ev: int) -> None:
        if ev & selectors.EVENT_WRITE:
            self._client_flush(c)
        if not ev & selectors.EVENT_READ:
            return
        try:
            data = c.sock.recv(1 << 16)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop_client(c)
            return
        try:
            msgs = c.dec.feed(data)
        except Exception:
            self._drop_client(c)
            return
        for m in msgs:
            rid = m.get("rid", 0)
            try:
                result = self.handle(m, c)
                if result is DEFERRED:
                    continue                  # answered by _complete
                reply = {"rid": rid, "ok": True, "result": result}
            except Exception as e:
                reply = error_reply(rid, e)
            self._send(c, reply)
            if m.get("op") == Op.SHUTDOWN.value and reply["ok"]:
                self.stopping = True

    def _send(self, c: Client, msg: dict) -> None:
        if c.sock.fileno() < 0:
            return
        c.out += encode(msg)
        if len(c.out) > CLIENT_DROP:
            print("aiorun-spawner: dropping a client that stopped reading", file=sys.stderr,
                  flush=True)
            self._drop_client(c)
            self._resume_output()
            return
        self._client_flush(c)

    def _congested(self) -> bool:
        return any(len(c.out) > CLIENT_HIGH for c in self.clients.values())

    def _resume_output(self) -> None:
        if not self.paused or self._congested():
            return
        for fd, p in list(self.paused.items()):
            del self.paused[fd]
            self.by_fd[fd] = ("out", p)
            self.sel.register(fd, selectors.EVENT_READ, ("out", p))

    def _client_flush(self, c: Client) -> None:
        while c.out:
            try:
                n = c.sock.send(c.out)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._drop_client(c)
                return
            del c.out[:n]
        if len(c.out) <= CLIENT_HIGH:
            self._resume_output()
        want = selectors.EVENT_READ | (selectors.EVENT_WRITE if c.out else 0)
        try:
            self.sel.modify(c.sock, want, ("client", c))
        except (KeyError, ValueError):
            pass

    def broadcast(self, msg: dict) -> None:
        for c in list(self.clients.values()):
            self._send(c, msg)

    def _unwatch(self, fd: int) -> None:
        self.paused.pop(fd, None)
        self.by_fd.pop(fd, None)
        try:
            self.sel.unregister(fd)
        except (KeyError, ValueError):
            pass

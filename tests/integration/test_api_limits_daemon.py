"""The API server of a real daemon under fd exhaustion and hostile clients (issue 11, item 2).

* A daemon with a low ``RLIMIT_NOFILE`` and no connection cap: opening connections until
  ``accept()`` fails with EMFILE must not end (or restart) the API service; connections it
  already serves keep working and new ones are served once some close.
* The connection cap: past ``AIORUN_API_MAX_CONNECTIONS`` a client gets a 503 naming the
  limit (the CLI prints it) and is closed.
* The header and idle timeouts (``AIORUN_API_HEADER_TIMEOUT``/``_IDLE_TIMEOUT``, ~1 s here):
  a half-sent head and an idle keep-alive connection are closed; a streaming ``GET /events``
  is not.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time

import pytest

from aiorun.testing.daemon import run_cli, start_daemon
from aiorun.testing.util import wait_until

pytestmark = pytest.mark.integration

BACKENDS = ["asyncio", "trio"]
PING = b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n"


def connect(path, timeout: float = 10.0) -> socket.socket:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    s.connect(str(path))
    return s


def read_response(s: socket.socket) -> bytes:
    """One small response (headers and a Content-Length body) from ``s``."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            return buf
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = s.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def read_until_closed(s: socket.socket) -> bytes:
    """Everything until the daemon closes (the socket's timeout fails the test otherwise)."""
    out = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return out
        out += chunk


def docker(d, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    return subprocess.run(["docker", "-H", f"unix://{d.socket}", *args], capture_output=True,
                          text=True, timeout=60, env=env)


def ping(path) -> bool:
    try:
        s = connect(path, timeout=2)
    except OSError:
        return False
    try:
        s.sendall(PING)
        return read_response(s).startswith(b"HTTP/1.1 200")
    except OSError:
        return False
    finally:
        s.close()


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


LIMIT = 128


@pytest.mark.parametrize("backend", BACKENDS)
def test_fd_exhaustion_keeps_the_api_serving(aiorun_paths, backend):
    # No cap: the connections run the daemon out of fds, accept() gets EMFILE.
    d = start_daemon(aiorun_paths, backend=backend, rlimit_nofile=LIMIT,
                     extra_env={"AIORUN_API_MAX_CONNECTIONS": "100000"})
    held: list[socket.socket] = []
    try:
        first = connect(d.socket)
        first.sendall(PING)
        assert read_response(first).startswith(b"HTTP/1.1 200")   # served, kept alive
        for _ in range(200):           # more than the daemon has fds; the rest wait in the
            held.append(connect(d.socket))  # listen backlog
        wait_until(lambda: open_fds(d.pid) >= LIMIT - 1, 15, "the daemon to run out of fds")
        time.sleep(0.5)        # accept() keeps failing with EMFILE meanwhile
        assert d.alive()
        # The connection it served before keeps working (a restarted API service would
        # have cut it).
        first.sendall(PING)
        assert read_response(first).startswith(b"HTTP/1.1 200")
        # Free fds: the backlog drains and fresh connections are served again.
        for s in held[:150]:
            s.close()
        del held[:150]
        wait_until(lambda: ping(d.socket), 15, "a fresh connection to be served")
        assert "cannot accept connections" in d.log()
        assert "accepting connections again" in d.log()
        for s in held:
            s.close()
        held.clear()
        first.close()
        out = run_cli(aiorun_paths, "ps", "-a")
        assert out.returncode == 0, out.stderr
        out = docker(d, "ps", "-a")
        assert out.returncode == 0, out.stderr
        assert "service api failed" not in d.log()
        assert d.alive()
    finally:
        for s in held:
            s.close()
        d.stop_all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_connection_cap_and_timeouts(aiorun_paths, backend):
    d = start_daemon(aiorun_paths, backend=backend, extra_env={
        "AIORUN_API_MAX_CONNECTIONS": "4", "AIORUN_API_HEADER_TIMEOUT": "1",
        "AIORUN_API_IDLE_TIMEOUT": "1"})
    try:
        # Idle keep-alive: answered, then closed after the idle timeout.
        s = connect(d.socket)
        s.sendall(PING)
        assert read_response(s).startswith(b"HTTP/1.1 200")
        assert read_until_closed(s) == b""
        s.close()

        # Half a head line, then silence: closed after the header timeout, no answer.
        s = connect(d.socket)
        s.sendall(b"GET /_ping HTTP/1.1\r\nHo")
        assert read_until_closed(s) == b""
        s.close()

        # A stream outlives the idle and header timeouts.
        events = connect(d.socket)
        events.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            head += events.recv(65536)
        assert head.startswith(b"HTTP/1.1 200")
        time.sleep(2.5)   # past both timeouts: the stream must still be open
        out = run_cli(aiorun_paths, "volume", "create", "apilimits-vol")
        assert out.returncode == 0, out.stderr
        got = head.partition(b"\r\n\r\n")[2]
        while b"apilimits-vol" not in got:
            chunk = events.recv(65536)
            assert chunk, "the events stream was closed"
            got += chunk
        assert run_cli(aiorun_paths, "volume", "rm", "apilimits-vol").returncode == 0

        # The cap: 4 event streams fill it (streams are never timed out); the 5th is refused.
        idle = [connect(d.socket) for _ in range(3)]
        for s in idle:
            s.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
            assert s.recv(65536).startswith(b"HTTP/1.1 200")
        extra = connect(d.socket)
        extra.sendall(PING)
        out_bytes = read_until_closed(extra)
        extra.close()
        assert out_bytes.startswith(b"HTTP/1.1 503"), out_bytes[:200]
        body = json.loads(out_bytes.partition(b"\r\n\r\n")[2])
        assert body == {"message": "too many connections (limit 4)"}
        # The CLI shows the refusal as a sentence.
        cli = run_cli(aiorun_paths, "ps")
        assert cli.returncode != 0 and "too many connections (limit 4)" in cli.stderr, cli
        assert "Traceback" not in cli.stderr
        cli = docker(d, "ps")
        assert cli.returncode != 0 and "too many connections (limit 4)" in cli.stderr, cli
        events.close()
        for s in idle:
            s.close()
        wait_until(lambda: ping(d.socket), 10, "a connection below the cap to be served")
        assert d.alive()
    finally:
        d.stop_all()


def test_bad_limit_settings_fail_clearly(aiorun_paths):
    r = run_cli(aiorun_paths, "serve", timeout=30,
                extra_env={"AIORUN_API_IDLE_TIMEOUT": "soon"})
    assert r.returncode == 1, r
    assert "invalid AIORUN_API_IDLE_TIMEOUT='soon': must be a positive number of seconds" \
        in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert not aiorun_paths.pidfile.exists() and not aiorun_paths.socket.exists()

"""What `aiorun run --rm` sends, against a scripted daemon on a unix socket: create, attach,
wait (condition=removed), start, each on its own connection and nothing else (no probe
connection), attach and wait registered before the start; the container's status and
output are the CLI's; and the whole command runs without the heavy standard modules
(json, re, enum, socket, signal, urllib.parse, threading)."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from aiorun.config import Paths
from aiorun.testing.daemon import _env

pytestmark = [pytest.mark.integration]


class ScriptedDaemon:
    """Accepts connections one at a time and answers each request from ``answers`` (first
    request-line substring that matches); records every connection's request line ("" for
    a connection that sent nothing) in order."""

    def __init__(self, path: Path, answers: list[tuple[bytes, bytes]]) -> None:
        self.answers = answers
        self.lines: list[str] = []
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(16)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                head = b""
                while b"\r\n\r\n" not in head:
                    data = conn.recv(65536)
                    if not data:
                        break
                    head += data
                line = head.split(b"\r\n", 1)[0].decode()
                self.lines.append(line)
                for key, answer in self.answers:
                    if key in head.split(b"\r\n", 1)[0]:
                        conn.sendall(answer)
                        break

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.thread.join(5)
        self.path.unlink(missing_ok=True)


ANSWERS = [
    (b"/containers/create", b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
                            b"Content-Length: 11\r\n\r\n{\"Id\":\"c1\"}"),
    (b"/attach", b"HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
                 b"\x01\x00\x00\x00\x00\x00\x00\x03hi\n\x02\x00\x00\x00\x00\x00\x00\x04err\n"),
    (b"/wait", b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n"
               b"20\r\n{\"StatusCode\": 3, \"Error\": null}\r\n0\r\n\r\n"),
    (b"/start", b"HTTP/1.1 204 No Content\r\n\r\n"),
]

HEAVY = ("json", "re", "enum", "collections", "functools", "socket", "signal", "selectors",
         "urllib.parse", "ipaddress", "threading", "importlib", "struct", "typing")


@pytest.fixture
def scripted(aiorun_paths: Paths):
    d = ScriptedDaemon(aiorun_paths.socket, ANSWERS)
    yield d
    d.close()


def test_run_rm_requests_in_order_on_four_connections(scripted, aiorun_paths):
    code = ("import sys\n"
            "from aiorun.cli.main import _main\n"
            "rc = _main(sys.argv[1:])\n"
            "sys.stdout.flush()\n"
            f"sys.stderr.write('HEAVY ' + repr(sorted(m for m in {HEAVY!r} "
            "if m in sys.modules)) + '\\n')\n"
            "sys.exit(rc)\n")
    r = subprocess.run([sys.executable, "-c", code, "run", "--rm", "busybox", "true"],
                       capture_output=True, text=True, timeout=60, env=_env(aiorun_paths))
    assert r.returncode == 3, r.stderr
    assert r.stdout == "hi\n"
    assert r.stderr.splitlines() == ["err", "HEAVY []"]
    verbs = [line.split(" ")[1].split("?")[0] if line else "(a connection, no request)"
             for line in scripted.lines]
    assert verbs == ["/containers/create", "/containers/c1/attach", "/containers/c1/wait",
                     "/containers/c1/start"], scripted.lines
    assert "condition=removed" in scripted.lines[2]
    assert "stream=1" in scripted.lines[1] and "stdin=0" in scripted.lines[1]


def test_no_daemon_and_no_autostart_for_dash_h(aiorun_paths, tmp_path):
    """-H names a socket nothing listens on: one clear line, the verb's status, and no
    daemon started (the first connection's refusal is not an auto-start there)."""
    sock = tmp_path / "none.sock"
    r = subprocess.run([sys.executable, "-m", "aiorun.cli.main", "-H", f"unix://{sock}",
                        "run", "--rm", "busybox", "true"], capture_output=True, text=True,
                       timeout=60, env=_env(aiorun_paths))
    assert r.returncode == 125
    assert r.stderr == f"aiorun: cannot reach the aiorun daemon at {sock}\n"
    assert not aiorun_paths.daemon_log.exists()

"""The CLI when the daemon dies mid-request (issue 11, item 9), and when its state root or
run directory cannot be used.

A fake daemon (a thread on a unix socket at the path the CLI uses) accepts and then hangs up
at a chosen point: before answering, mid-answer, mid-stream, mid-upload, with a reset. Each
time the real CLI must print one line naming the lost connection and daemon.log, exit 1 (125
for ``run``/``create``, as docker), and never print a traceback. Then the same with a real
daemon killed (SIGKILL) while ``aiorun import`` is uploading to it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from aiorun.config import Paths
from aiorun.testing.daemon import _env, aiorun_executable, run_cli, start_daemon, stop_spawner

pytestmark = pytest.mark.integration

LOST = "aiorun: the daemon closed the connection during the request (is it still running? see "


def _read_head(conn: socket.socket) -> bytes:
    """The request head, or b"" for a connection closed first (the CLI's probe connect)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = conn.recv(65536)
        if not data:
            return b""
        buf += data
    return buf


class FakeDaemon:
    """Accepts on ``path``; each request is handed to ``behave(conn, head)``, which answers
    (or not) and returns; the connection is then closed. With ``read_head=False`` behave
    gets the connection untouched (and an empty head)."""

    def __init__(self, path: Path, behave: Callable[[socket.socket, bytes], None],
                 read_head: bool = True) -> None:
        self.behave = behave
        self.read_head = read_head
        self.requests: list[bytes] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(16)
        self.path = path
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return                              # closed: the test is over
            with conn:
                try:
                    if not self.read_head:
                        self.behave(conn, b"")
                        continue
                    head = _read_head(conn)
                    if head:
                        self.requests.append(head.split(b"\r\n", 1)[0])
                        self.behave(conn, head)
                except OSError:
                    pass

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass                                # closed already
        self.sock.close()
        self.thread.join(5)
        self.path.unlink(missing_ok=True)


@pytest.fixture
def fake(aiorun_paths: Paths) -> Iterator[Callable[..., FakeDaemon]]:
    made: list[FakeDaemon] = []

    def start(behave: Callable[[socket.socket, bytes], None],
              read_head: bool = True) -> FakeDaemon:
        d = FakeDaemon(aiorun_paths.socket, behave, read_head)
        made.append(d)
        return d
    yield start
    for d in made:
        d.close()


# ------------------------------------------------------------------ ways to hang up

def no_answer(conn: socket.socket, head: bytes) -> None:
    """Read the request, close without a word."""


def half_head(conn: socket.socket, head: bytes) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: appl")


def cut_body(conn: socket.socket, head: bytes) -> None:
    conn.sendall(b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 200\r\n\r\n{\"Id\": \"abc")


def cut_stream(conn: socket.socket, head: bytes) -> None:
    """A chunked JSON stream that stops mid-way (no last chunk)."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n"
                 b"1b\r\n{\"status\":\"Importing\"}\r\n\r\n" b"40\r\n{\"stat")


def reset(conn: socket.socket, head: bytes) -> None:
    """(read_head=False) Close with most of the request unread: the kernel resets the CLI's
    side (ECONNRESET on its read)."""
    if conn.recv(1):
        RESETS.append(1)


RESETS: list[int] = []


def not_http(conn: socket.socket, head: bytes) -> None:
    conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")


def mid_upload(conn: socket.socket, head: bytes) -> None:
    """Take the first 256 KiB of an upload, then hang up: the CLI's next send gets EPIPE."""
    got = 0
    while got < 256 * 1024:
        data = conn.recv(65536)
        if not data:
            return
        got += len(data)


def check_lost(r: subprocess.CompletedProcess[str], paths: Paths, code: int = 1) -> None:
    assert "Traceback" not in r.stderr, r.stderr
    # the last line (an upload's progress lines may come before it)
    assert r.stderr.splitlines(keepends=True)[-1] == f"{LOST}{paths.daemon_log})\n", r.stderr
    assert r.returncode == code, (r.returncode, r.stderr)


@pytest.mark.parametrize("behave", [no_answer, half_head, cut_body, reset],
                         ids=lambda f: f.__name__)
def test_hang_up_before_a_complete_answer(fake, aiorun_paths, behave):
    d = fake(behave, read_head=behave is not reset)
    check_lost(run_cli(aiorun_paths, "ps"), aiorun_paths)
    check_lost(run_cli(aiorun_paths, "rm", "-f", "c1"), aiorun_paths)
    # docker's status for a failed run/create
    check_lost(run_cli(aiorun_paths, "create", "busybox"), aiorun_paths, 125)
    check_lost(run_cli(aiorun_paths, "run", "--rm", "busybox", "true"), aiorun_paths, 125)
    assert d.requests or RESETS, "the CLI never reached the fake daemon"


def test_stream_cut_midway(fake, aiorun_paths, tmp_path):
    fake(cut_stream)
    tar = tmp_path / "small.tar"
    tar.write_bytes(b"\0" * 10240)
    r = run_cli(aiorun_paths, "import", str(tar), "x:1")
    check_lost(r, aiorun_paths)
    assert r.stdout == "Importing\n"


def test_upload_cut_midway(fake, aiorun_paths, tmp_path):
    """The bug: EPIPE on the socket was taken for a closed stdout (exit 1, no message)."""
    d = fake(mid_upload)
    tar = tmp_path / "big.tar"
    with open(tar, "wb") as f:
        f.truncate(16 * 1024 * 1024)
    check_lost(run_cli(aiorun_paths, "import", str(tar)), aiorun_paths)
    check_lost(run_cli(aiorun_paths, "load", "-i", str(tar)), aiorun_paths)
    assert any(b"/images/create" in req for req in d.requests)


def test_an_answer_that_is_not_http(fake, aiorun_paths):
    fake(not_http)
    r = run_cli(aiorun_paths, "ps")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr == "aiorun: the daemon's answer is not HTTP: 'SSH-2.0-OpenSSH_9.6'\n"


def dies_while_attached(conn: socket.socket, head: bytes) -> None:
    """Create, attach, start answer; the wait answer is cut short: the daemon died while
    the container ran."""
    line = head.split(b"\r\n", 1)[0]
    if b"/containers/create" in line:
        conn.sendall(b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 11\r\n\r\n{\"Id\":\"c1\"}")
    elif b"/attach" in line:
        conn.sendall(b"HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
                     b"\x01\x00\x00\x00\x00\x00\x00\x03hi\n")
    elif b"/wait" in line:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
    elif b"/start" in line:
        conn.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")


def test_daemon_gone_while_run_is_attached(fake, aiorun_paths):
    """Before: the cut wait answer became exit status 125 with no word about why."""
    fake(dies_while_attached)
    r = run_cli(aiorun_paths, "run", "busybox", "echo", "hi")
    assert r.stdout == "hi\n"
    check_lost(r, aiorun_paths, 125)


def test_daemon_gone_between_two_requests(fake, aiorun_paths):
    """`run -d`: the create is answered, then the daemon is gone (its socket file left
    behind, as after kill -9): the start's connect is refused."""
    holder: list[FakeDaemon] = []

    def create_then_die(conn: socket.socket, head: bytes) -> None:
        # Stop listening (the socket file stays) before answering: closed after the answer,
        # the CLI's next connect could land in the backlog first and be reset, not refused.
        holder[0].sock.close()
        conn.sendall(b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 11\r\n\r\n{\"Id\":\"c1\"}")
    holder.append(fake(create_then_die))
    r = run_cli(aiorun_paths, "run", "-d", "busybox", "true")
    assert "Traceback" not in r.stderr and r.returncode == 125
    assert r.stderr == (f"aiorun: cannot reach the aiorun daemon at {aiorun_paths.socket}: "
                        "Connection refused (is it still running? see "
                        f"{aiorun_paths.daemon_log})\n")


def test_explicit_host_names_no_log(fake, aiorun_paths):
    """With -H the socket may be another engine's: no daemon.log is named."""
    fake(no_answer)
    r = run_cli(aiorun_paths, "-H", f"unix://{aiorun_paths.socket}", "images")
    assert r.stderr == ("aiorun: the daemon closed the connection during the request "
                        "(is it still running?)\n") and r.returncode == 1


def test_closed_stdout_stays_quiet(fake, aiorun_paths):
    """EPIPE on the real stdout is still a quiet exit, not a daemon error."""
    def many_images(conn: socket.socket, head: bytes) -> None:
        body = b"[" + b",".join(
            b'{"Id":"sha256:%064x","RepoTags":["r%d:latest"],"Created":0,"Size":1}' % (i, i)
            for i in range(20000)) + b"]"
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    fake(many_images)
    read, write = os.pipe()
    os.close(read)                       # nobody reads the CLI's stdout
    try:
        p = subprocess.run([aiorun_executable(), "images"], stdout=write,
                           stderr=subprocess.PIPE, text=True, env=_env(aiorun_paths),
                           timeout=60)
    finally:
        os.close(write)
    assert p.returncode == 1 and p.stderr == "", p.stderr


# ------------------------------------------------------------------ a real daemon, kill -9

def test_import_into_a_daemon_killed_mid_upload(aiorun_paths):
    d = start_daemon(aiorun_paths, storage_driver="copy")
    try:
        cli = subprocess.Popen([aiorun_executable(), "import", "-", "big:1"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=_env(aiorun_paths))
        assert cli.stdin is not None
        block = b"\0" * (1024 * 1024)
        # A pipe holds 64 KiB: once these writes return, the CLI has connected and sent
        # most of them to the daemon.
        for _ in range(4):
            cli.stdin.write(block)
        cli.stdin.flush()
        d.kill9()
        try:
            for _ in range(64):         # the CLI's sends now fail; it stops reading stdin
                cli.stdin.write(block)
            cli.stdin.close()
        except BrokenPipeError:
            pass
        out, err = cli.communicate(timeout=60)
    finally:
        d.kill9()
        stop_spawner(aiorun_paths)
    assert b"Traceback" not in err, err
    assert err.decode().splitlines(keepends=True)[-1] == f"{LOST}{aiorun_paths.daemon_log})\n"
    assert cli.returncode == 1


# ------------------------------------------------------------------ unusable state dirs

def test_state_root_where_a_file_is(aiorun_paths, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("")
    r = run_cli(aiorun_paths, "ps", extra_env={"AIORUN_ROOT": str(afile / "root")})
    assert "Traceback" not in r.stderr and r.returncode == 1
    assert r.stderr == (f"aiorun: cannot use {afile / 'root'} as the daemon's state root "
                        "(AIORUN_ROOT/--root): Not a directory\n")
    r = run_cli(aiorun_paths, "--run-root", str(afile / "run"), "images")
    assert r.stderr == (f"aiorun: cannot use {afile / 'run'} as the daemon's run directory "
                        "(AIORUN_RUN/--run-root): Not a directory\n") and r.returncode == 1
    r = run_cli(aiorun_paths, "run", "busybox", extra_env={"AIORUN_ROOT": str(afile)})
    assert r.stderr == (f"aiorun: cannot use {afile} as the daemon's state root "
                        "(AIORUN_ROOT/--root): File exists\n") and r.returncode == 125


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A read-only bind mount of an empty directory (unmounted afterwards)."""
    src, ro = tmp_path / "src", tmp_path / "ro"
    src.mkdir()
    ro.mkdir()
    subprocess.run(["mount", "--bind", str(src), str(ro)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(ro)], check=True)
        yield ro
    finally:
        subprocess.run(["umount", str(ro)], check=True)


def test_state_root_on_a_read_only_mount(aiorun_paths, read_only_dir):
    for root in (read_only_dir, read_only_dir / "sub"):
        r = run_cli(aiorun_paths, "--root", str(root), "ps")
        assert "Traceback" not in r.stderr and r.returncode == 1
        assert r.stderr == (f"aiorun: cannot use {root} as the daemon's state root "
                            "(AIORUN_ROOT/--root): Read-only file system\n")
    r = run_cli(aiorun_paths, "--root", str(read_only_dir), "serve")
    assert "Traceback" not in r.stderr and r.returncode == 1
    assert r.stderr.startswith("aiorun serve: ") and "Read-only file system" in r.stderr
    assert r.stderr.count("\n") == 1

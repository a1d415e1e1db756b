"""aiorun.api.client.Client: the first-connection hook (the CLI's auto-start without a
probe connection) and requests sent before their answers are read (Client.send)."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from aiorun.api.client import ApiError, Client, ConnectFailed, DaemonUnreachable

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 9\r\n\r\n{\"ok\": 1}"


class Server:
    """Answers every request on ``path`` with ``answer`` (one request per connection);
    records the request lines in arrival order."""

    def __init__(self, path: Path, answer: bytes = OK) -> None:
        self.lines: list[bytes] = []
        self.answer = answer
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(8)
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                head = b""
                while b"\r\n\r\n" not in head:
                    data = conn.recv(4096)
                    if not data:
                        break
                    head += data
                self.lines.append(head.split(b"\r\n", 1)[0])
                if head:
                    conn.sendall(self.answer)

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.thread.join(5)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "d.sock"


@pytest.mark.parametrize("make_socket_file", [False, True], ids=["no-socket", "refused"])
def test_hook_runs_on_the_first_failed_connect_then_the_request_goes_on(path,
                                                                        make_socket_file):
    if make_socket_file:                 # a dead daemon's socket file: ECONNREFUSED
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(str(path))
        s.close()
    servers: list[Server] = []

    def start() -> None:
        path.unlink(missing_ok=True)
        servers.append(Server(path))
    c = Client(path, on_unreachable=start)
    try:
        assert c.get("/a") == {"ok": 1}
        assert len(servers) == 1 and servers[0].lines == [b"GET /a HTTP/1.1"]
        assert c.on_unreachable is None
    finally:
        for srv in servers:
            srv.close()


def test_hook_is_not_called_once_a_connection_succeeded(path):
    calls: list[int] = []
    srv = Server(path)
    c = Client(path, on_unreachable=lambda: calls.append(1))
    assert c.get("/a") == {"ok": 1}
    srv.close()
    path.unlink()
    with pytest.raises(ConnectFailed):   # the daemon went away between two requests
        c.get("/b")
    assert calls == []


def test_hook_error_is_the_clients_error_and_without_hook_connect_fails(path):
    def refuse() -> None:
        raise DaemonUnreachable("no daemon here")
    with pytest.raises(DaemonUnreachable, match="no daemon here"):
        Client(path, on_unreachable=refuse).get("/a")
    with pytest.raises(ConnectFailed, match="cannot reach the aiorun daemon at"):
        Client(path).get("/a")


def test_hook_that_does_not_help_is_called_once(path):
    calls: list[int] = []
    c = Client(path, on_unreachable=lambda: calls.append(1))
    with pytest.raises(ConnectFailed):
        c.get("/a")
    with pytest.raises(ConnectFailed):
        c.get("/a")
    assert calls == [1]


def test_send_then_response_pipelines_two_requests(path):
    srv = Server(path)
    try:
        c = Client(path)
        a = c.send("POST", "/x/attach", {"stream": True, "name": "a b"})
        b = c.send("POST", "/x/wait", {"condition": "removed"}, body={"k": [1]})
        ra, rb = a.response(), b.response()
        assert (ra.json(), rb.json()) == ({"ok": 1}, {"ok": 1})
        ra.close()
        rb.close()
        assert srv.lines == [b"POST /x/attach?stream=1&name=a+b HTTP/1.1",
                             b"POST /x/wait?condition=removed HTTP/1.1"]
    finally:
        srv.close()


def test_response_error_status_raises_api_error(path):
    body = b'{"message": "No such container: x"}'
    srv = Server(path, b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
                       b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    try:
        with pytest.raises(ApiError) as e:
            Client(path).send("POST", "/containers/x/start").response()
        assert (e.value.status, e.value.message) == (404, "No such container: x")
        r = Client(path).send("POST", "/containers/x/start").response(check=False)
        assert r.status == 404
        r.close()
    finally:
        srv.close()

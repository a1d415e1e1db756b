"""A small blocking HTTP/1.1 client for the daemon's unix socket.

Written on raw sockets on purpose: ``http.client`` pulls in the email parser and costs ~50 ms
of CLI start-up, which is part of ``aiorun run``'s latency. Speaks just what our server
speaks: Content-Length and chunked bodies, and connection upgrade for attach/exec.

Every module it loads is on the CLI's hot path, so it loads no heavy ones: the C socket type
(``_socket``), JSON and URL encoding from :mod:`aiorun.api.wire` (``_json``, no ``re``).
``tests/unit/test_cli_context.py`` lists what must stay out.
"""

from __future__ import annotations

import io
import os
# The C socket type, not the ``socket`` module: that one builds enums of every constant
# (``enum`` -> ``re``, ``functools``, ``collections``) and imports ``selectors`` and ``array``,
# ≈ 3–4 ms of every CLI start. The client needs connect, sendall, recv, shutdown and close,
# which are all the C type's own methods.
from _collections_abc import Iterator   # loaded at start-up (by os); collections.abc is not
from _socket import AF_UNIX, SOCK_STREAM
from _socket import socket as Socket

from aiorun.api.wire import dumps, loads, quote, urlencode
from aiorun.errors import AiorunError

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs ~3 ms of every CLI start
    from typing import Any, Callable


class ApiError(AiorunError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class DaemonUnreachable(AiorunError):
    """No usable answer from the daemon: the CLI's own failure, not an error answer (so the
    CLI prints ``aiorun: ...``, never "Error response from daemon")."""

    status = 0


class ConnectFailed(DaemonUnreachable):
    """The daemon's socket does not take the connection (ECONNREFUSED: the daemon died and
    left its socket; ENOENT: no socket)."""


class ConnectionLost(DaemonUnreachable):
    """The daemon closed or reset the connection before its answer was complete: mid-upload
    (EPIPE/ECONNRESET on the socket), before the response head, or inside a body or stream.

    Never a :class:`BrokenPipeError`: the CLI treats that one as "stdout went away" (a quiet
    exit), and a dead daemon must be reported, not mistaken for a closed pipe.
    """

    MESSAGE = "the daemon closed the connection during the request"

    def __init__(self, detail: str = "") -> None:
        super().__init__(self.MESSAGE)
        self.detail = detail            # what exactly happened, for --debug


class BadAnswer(DaemonUnreachable):
    """The daemon's answer is not the HTTP/JSON it should be."""


class HTTPResponse:
    def __init__(self, sock: Socket, status: int, reason: str,
                 headers: dict[str, str], buf: bytearray) -> None:
        self.sock = sock
        self.status = status
        self.reason = reason
        self.headers = headers
        self._buf = buf
        self._done = False

    # -- low-level reading ---------------------------------------------------------
    def _recv(self) -> bytes:
        try:
            return self.sock.recv(65536)
        except OSError as exc:          # ECONNRESET & co.: the daemon went away mid-answer
            raise ConnectionLost(f"reading the answer: {exc}") from None

    def _fill(self) -> bool:
        data = self._recv()
        if not data:
            return False
        self._buf += data
        return True

    def _read_line(self) -> bytes:
        while True:
            i = self._buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self._buf[:i])
                del self._buf[: i + 2]
                return line
            if not self._fill():
                raise ConnectionLost("connection closed inside a chunk header")

    def _read_exact(self, n: int) -> bytes:
        while len(self._buf) < n:
            if not self._fill():
                raise ConnectionLost("connection closed inside a response body")
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    def iter_chunks(self) -> Iterator[bytes]:
        """Yield the body as it arrives."""
        if self._done:
            return
        te = self.headers.get("transfer-encoding", "").lower()
        if self.status in (204, 304) or 100 <= self.status < 200:
            pass  # no body by definition (RFC 9112 §6.3); don't wait for the close
        elif "chunked" in te:
            while True:
                size = _number(self._read_line().split(b";")[0], 16, "chunk size")
                if size == 0:
                    self._read_line()
                    break
                data = self._read_exact(size)
                self._read_exact(2)
                yield data
        elif "content-length" in self.headers:
            n = _number(self.headers["content-length"].encode(), 10, "Content-Length")
            if n:
                yield self._read_exact(n)
        else:  # until close
            if self._buf:
                yield bytes(self._buf)
                self._buf.clear()
            while True:
                data = self._recv()
                if not data:
                    break
                yield data
        self._done = True

    def read(self) -> bytes:
        return b"".join(self.iter_chunks())

    def iter_lines(self) -> Iterator[bytes]:
        pending = b""
        for chunk in self.iter_chunks():
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if line.strip():
                    yield line
        if pending.strip():
            yield pending

    def json(self) -> Any:
        body = self.read()
        try:
            return loads(body) if body.strip() else None
        except ValueError:              # an answer cut short where no length told us so
            raise BadAnswer(f"the daemon's answer is not valid JSON: "
                            f"{body[:80].decode(errors='replace')!r}") from None

    def close(self) -> None:
        self.sock.close()


def _number(text: bytes, base: int, what: str) -> int:
    try:
        n = int(text, base)
    except ValueError:
        n = -1
    if n < 0:
        raise BadAnswer(f"the daemon's answer has an invalid {what}: {text[:40]!r}")
    return n


class Pending:
    """A request sent, its answer not read yet (:meth:`Client.send`)."""

    def __init__(self, sock: Socket, sent: OSError | None) -> None:
        self.sock = sock
        self.sent = sent                # the socket error that cut the sending short

    def response(self, check: bool = True) -> HTTPResponse:
        """Read the answer's head; with ``check`` a status >= 400 raises :class:`ApiError`
        carrying the daemon's message (the connection is then closed)."""
        sock = self.sock
        try:
            if self.sent is None:
                resp = Client._read_head(sock)
            else:
                # The daemon hung up mid-request. It may have answered first (a refusal of
                # an upload, say): report that answer if there is one, else the lost
                # connection.
                try:
                    resp = Client._read_head(sock)
                except ConnectionLost:
                    raise ConnectionLost(f"sending the request: {self.sent}") from None
        except BaseException:
            sock.close()
            raise
        if check and resp.status >= 400:
            try:
                body_bytes = resp.read()
            finally:
                resp.close()
            try:
                msg = loads(body_bytes)["message"]
            except Exception:
                msg = body_bytes.decode(errors="replace").strip() or resp.reason
            raise ApiError(resp.status, msg)
        return resp

    def close(self) -> None:
        self.sock.close()


class Client:
    """One request per connection (the daemon's socket is local; connecting costs ~50 µs).

    ``on_unreachable`` (the CLI's auto-start of the daemon) is called when the *first*
    connection of this client is refused or finds no socket; it either makes the daemon
    answer (the connection is then tried once more) or raises. It is what lets the CLI
    skip a probe connection before its first request. Once a connection succeeds it is
    never called again: a daemon lost between two requests is reported, not restarted.
    """

    def __init__(self, socket_path: str | os.PathLike[str],
                 on_unreachable: Callable[[], None] | None = None) -> None:
        self.socket_path = os.fspath(socket_path)
        self.on_unreachable = on_unreachable

    def connect(self) -> Socket:
        try:
            s = self._connect()
        except ConnectFailed:
            hook, self.on_unreachable = self.on_unreachable, None
            if hook is None:
                raise
            hook()
            s = self._connect()
        self.on_unreachable = None
        return s

    def _connect(self) -> Socket:
        s = Socket(AF_UNIX, SOCK_STREAM)
        try:
            s.connect(self.socket_path)
        except OSError as exc:          # ENOENT, ECONNREFUSED, EACCES, ENOTSOCK...
            s.close()
            raise ConnectFailed(f"cannot reach the aiorun daemon at {self.socket_path}: "
                                f"{exc.strerror or exc}") from None
        return s

    def request(self, method: str, path: str, query: dict[str, Any] | None = None,
                body: Any = None, headers: dict[str, str] | None = None,
                upgrade: bool = False, check: bool = True) -> HTTPResponse:
        """Send a request; ``body`` is bytes, a binary file or an iterator of bytes (both sent
        chunked) or JSON.

        With ``check`` a status >= 400 raises :class:`ApiError` carrying the daemon's message.
        """
        return self.send(method, path, query, body, headers, upgrade).response(check)

    def send(self, method: str, path: str, query: dict[str, Any] | None = None,
             body: Any = None, headers: dict[str, str] | None = None,
             upgrade: bool = False) -> Pending:
        """The first half of :meth:`request`: connect and send, without waiting for the
        answer (:meth:`Pending.response` reads it). Two requests sent before either answer
        is read cost one round trip, not two."""
        target = quote(path, safe="/:@")
        if query:
            q = {k: (dumps(v) if isinstance(v, (dict, list)) else
                     ("1" if v is True else "0" if v is False else v))
                 for k, v in query.items() if v is not None}
            if q:
                target += "?" + urlencode(q)
        hdrs = {"Host": "aiorun", "User-Agent": "aiorun-cli"}
        chunks: Iterator[bytes] | None = None
        if body is None:
            payload = b""
        elif isinstance(body, (bytes, bytearray)):
            payload = bytes(body)
        elif isinstance(body, (io.IOBase, Iterator)):
            payload = b""
            chunks = iter(lambda: body.read(65536), b"") if isinstance(body, io.IOBase) else body
            hdrs["Transfer-Encoding"] = "chunked"
            hdrs.setdefault("Content-Type", "application/x-tar")
        else:
            payload = dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        if chunks is None:
            hdrs["Content-Length"] = str(len(payload))
        if upgrade:
            hdrs["Connection"] = "Upgrade"
            hdrs["Upgrade"] = "tcp"
        hdrs.update(headers or {})
        head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
        sock = self.connect()
        try:
            sent = self._send(sock, head.encode() + b"\r\n" + payload, chunks)
        except BaseException:
            sock.close()
            raise
        return Pending(sock, sent)

    @staticmethod
    def _send(sock: Socket, first: bytes,
              chunks: Iterator[bytes] | None) -> OSError | None:
        """Send the request; the socket error that cut it short, if any. Reading the local
        body (a file, stdin) is outside the ``try``: its errors are not the daemon's."""
        try:
            sock.sendall(first)
        except OSError as exc:
            return exc
        if chunks is None:
            return None
        for c in chunks:
            if not c:
                continue
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(c), c))
            except OSError as exc:
                return exc
        try:
            sock.sendall(b"0\r\n\r\n")
        except OSError as exc:
            return exc
        return None

    @staticmethod
    def _read_head(sock: Socket) -> HTTPResponse:
        buf = bytearray()
        while b"\r\n\r\n" not in buf:
            try:
                data = sock.recv(65536)
            except OSError as exc:
                raise ConnectionLost(f"reading the answer's head: {exc}") from None
            if not data:
                raise ConnectionLost("closed before a complete answer's head"
                                     + (f" (got {bytes(buf[:60])!r})" if buf else ""))
            buf += data
        head, _, rest = bytes(buf).partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        version, _, status_reason = lines[0].partition(" ")
        status, _, reason_text = status_reason.partition(" ")
        if not version.startswith("HTTP/") or not (status.isdigit() and len(status) == 3):
            raise BadAnswer(f"the daemon's answer is not HTTP: {lines[0][:60]!r}")
        reason = [reason_text] if reason_text else []
        headers: dict[str, str] = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        return HTTPResponse(sock, int(status), reason[0] if reason else "", headers, bytearray(rest))

    # -- conveniences ---------------------------------------------------------------
    def get(self, path: str, **query: Any) -> Any:
        r = self.request("GET", path, query)
        try:
            return r.json()
        finally:
            r.close()

    def post(self, path: str, body: Any = None, **query: Any) -> Any:
        r = self.request("POST", path, query, body)
        try:
            return r.json()
        finally:
            r.close()

    def delete(self, path: str, **query: Any) -> Any:
        r = self.request("DELETE", path, query)
        try:
            return r.json()
        finally:
            r.close()

"""Progress of long CLI work: Docker's JSON progress messages, drawn as docker draws them.

One renderer for everything that takes long — ``pull``, ``push`` (the daemon's message
stream) and ``import``, ``load``, ``save``, ``build``'s context upload (bytes this process
sends or receives, reported by :class:`Transfer` as the same kind of messages):

* on a terminal each item (a layer, a file) keeps one line, rewritten in place
  (``<id>: Downloading [=====>      ] 1.2MB/3.4MB``);
* otherwise each item prints one plain line per status change (``<id>: Uploading``,
  ``<id>: Upload complete``); progress updates without a status change are not repeated.

Messages are dicts: ``{"status", "id", "progressDetail": {"current", "total"}, "progress"}``;
a message without ``progressDetail`` is not an item's and always gets its own line.

Standard library only: the CLI's start-up stays lean.
"""

from __future__ import annotations

import json
import sys

from aiorun.core.progressbar import bar, human

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, BinaryIO, Iterator, TextIO

#: Read/write size of a transfer, and the least progress worth a message.
CHUNK = 1 << 16
MIN_STEP = 256 << 10


class ProgressPrinter:
    """Renders Docker's JSON messages: in place on a terminal, plain lines otherwise."""

    def __init__(self, out: TextIO, tty: bool) -> None:
        self.out = out
        self.tty = tty
        self.rows: list[str] = []          # item ids, in the order first seen (tty)
        self.last: dict[str, str] = {}     # item id -> last status printed (not a tty)

    def show(self, msg: dict[str, Any]) -> None:
        status = str(msg.get("status") or "")
        ident = str(msg.get("id") or "")
        if not status:
            return
        if not ident or "progressDetail" not in msg:
            self.out.write(f"{ident}: {status}\n" if ident else f"{status}\n")
            self.out.flush()
            return
        line = f"{ident}: {status}"
        if self.tty:
            if msg.get("progress"):
                line += f" {msg['progress']}"
            self._draw(ident, line)
        elif self.last.get(ident) != status:
            self.last[ident] = status
            self.out.write(line + "\n")
            self.out.flush()

    def _draw(self, ident: str, line: str) -> None:
        if ident not in self.rows:
            self.rows.append(ident)
            self.out.write(line + "\n")
        else:
            up = len(self.rows) - self.rows.index(ident)
            # up to the item's row, rewrite it, back down
            self.out.write(f"\x1b[{up}A\r\x1b[2K{line}\x1b[{up}B\r")
        self.out.flush()


def render_stream(resp: Any, printer: ProgressPrinter) -> int:
    """Print a daemon's JSON message stream (pull, push); 1 if it carried an error (printed
    on stderr, as docker does), else 0."""
    code = 0
    for line in resp.iter_lines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if not isinstance(msg, dict):
            continue
        if msg.get("error"):
            printer.out.flush()
            sys.stderr.write(str(msg["error"]).rstrip("\n") + "\n")
            sys.stderr.flush()
            code = 1
        else:
            printer.show(msg)
    return code


class Transfer:
    """Bytes of one item going to or coming from the daemon, shown as progress messages:
    ``action`` while it moves (with a bar when ``total`` is known), ``done`` at the end."""

    def __init__(self, printer: ProgressPrinter, ident: str, action: str, done: str,
                 total: int | None = None) -> None:
        self.printer = printer
        self.ident = ident
        self.action = action
        self.done_status = done
        self.total = total or None
        self.current = 0
        self._shown = -1
        self._step = max(MIN_STEP, (total or 0) // 100)

    def advance(self, n: int) -> None:
        self.current += n
        if self._shown < 0 or self.current - self._shown >= self._step:
            self._show()

    def _show(self) -> None:
        self._shown = self.current
        detail: dict[str, int] = {"current": self.current}
        if self.total:
            detail["total"] = self.total
        self.printer.show({"status": self.action, "id": self.ident, "progressDetail": detail,
                           "progress": bar(self.current, self.total)})

    def finish(self) -> None:
        if self._shown != self.current:
            self._show()
        self.printer.show({"status": f"{self.done_status} {human(self.current)}",
                           "id": self.ident, "progressDetail": {}})


def file_size(f: Any) -> int | None:
    """The size of a regular file behind ``f`` (None for a pipe or a terminal)."""
    import os
    import stat
    try:
        st = os.fstat(f.fileno())
    except (OSError, AttributeError, ValueError):
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


def reading(f: BinaryIO, transfer: Transfer) -> Iterator[bytes]:
    """``f``'s bytes as a request body, reporting them to ``transfer``; finished at EOF."""
    while True:
        chunk = f.read(CHUNK)
        if not chunk:
            break
        transfer.advance(len(chunk))
        yield chunk
    transfer.finish()


def stderr_printer(quiet: bool = False) -> ProgressPrinter:
    """Progress of import/load/save/build on stderr (stdout carries their results: an id,
    "Loaded image: …", the tar); a terminal gets bars. ``quiet``: nothing is shown."""
    if quiet:
        import io
        return ProgressPrinter(io.StringIO(), False)
    return ProgressPrinter(sys.stderr, sys.stderr.isatty())

"""Reading what the kernel and the spawner wrote: the container's json-file log (``logs``,
with ``--tail`` read from the end of a possibly huge file, ``--follow``, and the rotated
files of ``--log-opt max-size/max-file`` read oldest first), and the
processes of its PID namespace from ``/proc`` (``top``)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, AsyncIterator

import anyio
import anyio.to_thread

from aiorun.core import state as st
from aiorun.engine.containers.records import Container
from aiorun.errors import Conflict
from aiorun.runtime.logfile import rotated_paths


async def read_log(c: Container, path: Path, follow: bool, stdout: bool, stderr: bool,
                   tail: int | None, since: float, until: float) -> AsyncIterator[tuple[str, str, str]]:
    def want(entry: dict[str, Any]) -> bool:
        s = entry.get("stream", "stdout")
        if (s == "stdout" and not stdout) or (s == "stderr" and not stderr):
            return False
        if since or until:
            t = st.parse_rfc3339(entry.get("time", "")) / 1e9
            if since and t < since:
                return False
            if until and t > until:
                return False
        return True

    def parse(data: bytes) -> tuple[list[dict[str, Any]], int]:
        """Entries of the complete lines in ``data`` and how many bytes they took."""
        end = data.rfind(b"\n")
        if end < 0:
            return [], 0
        out = []
        for line in data[:end].split(b"\n"):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out, end + 1

    def read_from(p: Path | str, pos: int) -> tuple[list[dict[str, Any]], int, int]:
        """(entries from ``pos`` on, the new position, the file's inode (0: missing))."""
        try:
            with open(p, "rb") as f:
                st_ = os.fstat(f.fileno())
                ino = st_.st_ino
                if st_.st_size < pos:
                    pos = 0                   # truncated (max-file 1 rotates in place)
                f.seek(pos)
                data = f.read()
        except FileNotFoundError:
            return [], pos, 0
        out, n = parse(data)
        return out, pos + n, ino

    def read_older() -> list[dict[str, Any]]:
        """The rotated files (``--log-opt max-file``), oldest first."""
        out: list[dict[str, Any]] = []
        for p in rotated_paths(str(path)):
            out += read_from(p, 0)[0]
        return out

    def follow_rotation(ino: int, pos: int) -> tuple[list[dict[str, Any]], int, int]:
        """What was added since ``pos``; if the file was rotated, the rest of the old one
        (now ``.1``) first."""
        try:
            now = os.stat(path).st_ino
        except FileNotFoundError:
            return [], pos, ino
        if ino and now != ino:
            old = f"{path}.1"
            rest: list[dict[str, Any]] = []
            try:
                if os.stat(old).st_ino == ino:
                    rest = read_from(old, pos)[0]
            except FileNotFoundError:
                pass
            new, pos, ino = read_from(path, 0)
            return rest + new, pos, ino
        new, pos, ino = read_from(path, pos)
        return new, pos, ino

    start = 0
    if tail is not None and tail >= 0 and stdout and stderr and not since and not until:
        # every entry counts: read only the end of a possibly huge log
        start = await anyio.to_thread.run_sync(_tail_offset, path, tail)
    entries, pos, ino = await anyio.to_thread.run_sync(read_from, path, start)
    if start == 0:                            # the current file is not enough: older ones too
        entries = await anyio.to_thread.run_sync(read_older) + entries
    entries = [e for e in entries if want(e)]
    if tail is not None and tail >= 0:
        entries = entries[-tail:] if tail else []
    for e in entries:
        yield e.get("stream", "stdout"), e.get("log", ""), e.get("time", "")
    if not follow:
        return
    while True:
        running = c.state.running and not c.gone
        new, pos, ino = await anyio.to_thread.run_sync(follow_rotation, ino, pos)
        for e in new:
            if want(e):
                yield e.get("stream", "stdout"), e.get("log", ""), e.get("time", "")
        if not running:
            return
        # the file is appended by the spawner; a short poll keeps this simple and cheap
        await anyio.sleep(0.1)


def _tail_offset(path: Path, n: int, block: int = 65536) -> int:
    """Offset where the last ``n`` complete lines of ``path`` start (0 if it has fewer).

    Reads backwards from the end: the (n+1)-th newline from the end precedes them. A partial
    line the writer is still appending after the last newline is not counted.
    """
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return 0
    with f:
        pos = f.seek(0, os.SEEK_END)
        seen = 0
        while pos > 0:
            size = min(block, pos)
            pos -= size
            f.seek(pos)
            data = f.read(size)
            i = len(data)
            while True:
                i = data.rfind(b"\n", 0, i)
                if i < 0:
                    break
                seen += 1
                if seen == n + 1:
                    return pos + i + 1
        return 0


def top_of_pid(pid: int) -> dict[str, Any]:
    """``ps -ef``-like rows for every process in the PID namespace of ``pid``."""
    try:
        ns = os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        raise Conflict(f"cannot read the PID namespace of process {pid}") from None
    titles = ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    rows = []
    tick = os.sysconf("SC_CLK_TCK")
    boot = _boot_time()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry}/ns/pid") != ns:
                continue
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            uid = os.stat(f"/proc/{entry}").st_uid
        except OSError:
            continue
        rest = stat[stat.rfind(")") + 2:].split()
        ppid = rest[1]
        utime, stime, start = int(rest[11]), int(rest[12]), int(rest[19])
        cpu = (utime + stime) // tick
        started = time.strftime("%H:%M", time.localtime(boot + start / tick))
        if not cmd:
            cmd = "[" + stat[stat.find("(") + 1:stat.rfind(")")] + "]"
        rows.append((int(entry), [_user_name(uid), entry, ppid, "0", started, "?",
                                  f"{cpu // 3600:02d}:{cpu // 60 % 60:02d}:{cpu % 60:02d}",
                                  cmd]))
    rows.sort()
    return {"Titles": titles, "Processes": [r for _, r in rows]}


def _boot_time() -> float:
    try:
        for line in open("/proc/stat"):
            if line.startswith("btime"):
                return float(line.split()[1])
    except OSError:
        pass
    return 0.0


def _user_name(uid: int) -> str:
    try:
        import pwd
        return pwd.getpwuid(uid).pw_name
    except (KeyError, ImportError):
        return str(uid)

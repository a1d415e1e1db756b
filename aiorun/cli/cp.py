"""``aiorun cp``: copy files between a container and the host, as ``docker cp``.

``aiorun cp CONTAINER:SRC DEST`` and ``aiorun cp SRC CONTAINER:DEST``; ``-`` as DEST writes
the container's tar to stdout, ``-`` as SRC reads a tar from stdin (extracted into the
container directory DEST). The daemon resolves container paths in the container's scope
(``/containers/{id}/archive``); here are Docker's client rules:

* a file to an existing directory lands inside it, otherwise it takes DEST's name; a DEST
  ending in ``/`` must be an existing directory;
* a directory lands inside an existing directory DEST, or becomes DEST when DEST does not
  exist; ``SRC/.`` copies the directory's contents; a directory never replaces a file;
* ``-L`` follows a symlink SRC; ``-a`` keeps owners (the daemon sets the container user's).

Extraction on the host uses :mod:`tarfile`'s ``tar`` filter: no entry lands outside DEST,
whatever links the container's tar holds.
"""

from __future__ import annotations

import base64
import io
import json
import os
import sys
import tarfile

from aiorun.cli.options import BOOL, Option, UsageError, verb

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Iterator

    from aiorun.cli.options import Opts

STAT_HEADER = "x-docker-container-path-stat"


def split_spec(arg: str) -> tuple[str | None, str]:
    """``CONTAINER:PATH`` → (container, path); a local path → (None, path). As docker, a
    local path with a ``:`` must start with ``/`` or ``.`` to be taken as local."""
    if arg.startswith(("/", ".")) or ":" not in arg:
        return None, arg
    c, _, p = arg.partition(":")
    return c, p


@verb("cp", "CONTAINER:SRC_PATH DEST_PATH|-  |  SRC_PATH|- CONTAINER:DEST_PATH",
      "Copy files/folders between a container and the local filesystem",
      Option("-a --archive", BOOL, "Archive mode (copy all uid/gid information)"),
      Option("-L --follow-link", BOOL, "Always follow symbol link in SRC_PATH"),
      Option("-q --quiet", BOOL, "Suppress progress output during copy"))
def cmd_cp(ctx: Any, opts: Opts, rest: list[str]) -> int:
    if len(rest) != 2:
        raise UsageError('"cp" requires exactly 2 arguments')
    (sc, sp), (dc, dp) = split_spec(rest[0]), split_spec(rest[1])
    if sc is not None and dc is not None:
        raise UsageError("copying between containers is not supported")
    if sc is None and dc is None:
        raise UsageError("must specify at least one container source")
    if (sc is not None and not sp) or (dc is not None and not dp):
        raise UsageError("filepath can not be empty")
    client = ctx.client()
    if sc is not None:
        n = copy_from(client, sc, sp, dp, opts.follow_link)
        target = dp
    else:
        assert dc is not None
        n = copy_to(client, sp, dc, dp, opts.follow_link, opts.archive)
        target = f"{dc}:{dp}"
    if not opts.quiet and dp != "-" and sp != "-":
        sys.stderr.write(f"Successfully copied {human(n)} to {target}\n")
    return 0


def human(n: int) -> str:
    v = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if v < 1000 or unit == "TB":
            return f"{v:.3g}{unit}"
        v /= 1000
    return f"{n}B"


def container_stat(client: Any, cid: str, path: str) -> dict[str, Any] | None:
    """The decoded stat header of ``path`` in ``cid``; None when it does not exist."""
    from aiorun.api.client import ApiError
    r = client.request("HEAD", f"/containers/{cid}/archive", {"path": path}, check=False)
    try:
        if r.status == 404:
            if r.headers.get(STAT_HEADER) is None:
                # no such container, or no such path: ask the container, for its message
                client.get(f"/containers/{cid}/json")
            return None
        if r.status >= 400:
            raise ApiError(r.status, f"cannot stat {path} in {cid} (status {r.status})")
        return json.loads(base64.b64decode(r.headers[STAT_HEADER]))
    finally:
        r.close()


def _is_dir(st: dict[str, Any]) -> bool:
    return bool(st["mode"] & (1 << 31))


# --------------------------------------------------------------------------- from container

def copy_from(client: Any, cid: str, src: str, dest: str, follow: bool) -> int:
    if follow:
        st = container_stat(client, cid, src)
        if st is not None and st.get("linkTarget"):
            src = st["linkTarget"]
    r = client.request("GET", f"/containers/{cid}/archive", {"path": src})
    try:
        if dest == "-":
            n = 0
            out = sys.stdout.buffer
            for chunk in r.iter_chunks():
                out.write(chunk)
                n += len(chunk)
            out.flush()
            return n
        st = json.loads(base64.b64decode(r.headers[STAT_HEADER]))
        return extract_local(r.iter_chunks(), st, src, dest)
    finally:
        r.close()


class _ChunkReader(io.RawIOBase):
    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks, self.buf = chunks, b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self.buf:
            try:
                self.buf = next(self.chunks)
            except StopIteration:
                return 0
        n = min(len(b), len(self.buf))
        b[:n], self.buf = self.buf[:n], self.buf[n:]
        return n


def local_target(st: dict[str, Any], src: str, dest: str) -> str:
    """The host path the copied top entry becomes (Docker's rules, module docstring)."""
    src_is_dir = _is_dir(st)
    contents = src.endswith("/.") or src == "."
    if os.path.isdir(dest):
        return dest if (src_is_dir and contents) else os.path.join(dest, st["name"])
    if os.path.lexists(dest):
        if src_is_dir:
            raise UsageError(f"cannot copy a directory to a file: {dest}")
        return dest
    if dest.endswith("/") or dest.endswith("/."):
        raise UsageError(f"destination directory {dest!r} does not exist")
    parent = os.path.dirname(os.path.abspath(dest))
    if not os.path.isdir(parent):
        raise UsageError(f"no such directory: {parent}")
    return dest


def rel_under(name: str, top: str) -> str | None:
    """``name``'s path below the archive's top entry ``top`` ('' for the top itself; None
    when it is not under it). The top is a name, ``.`` (``dir/.``) or ``/``."""
    def norm(p: str) -> str:
        p = p.strip("/")
        while p.startswith("./"):
            p = p[2:]
        return "" if p == "." else p
    n, t = norm(name), norm(top)
    if not t:
        return n
    if n == t:
        return ""
    return n[len(t) + 1:] if n.startswith(t + "/") else None


def extract_local(chunks: Iterator[bytes], st: dict[str, Any], src: str, dest: str) -> int:
    target = os.path.abspath(local_target(st, src, dest))
    top, new = st["name"], os.path.basename(target)
    parent = os.path.dirname(target)
    size = 0
    stream = io.BufferedReader(_ChunkReader(chunks), 1 << 16)
    with tarfile.open(fileobj=stream, mode="r|") as t:
        for m in t:
            rel = rel_under(m.name, top)
            if rel is None:
                continue        # not under the entry asked for: never written
            m.name = f"{new}/{rel}" if rel else new
            size += m.size
            t.extract(m, parent, filter="tar")
    return size


# --------------------------------------------------------------------------- to container

def copy_to(client: Any, src: str, cid: str, dest: str, follow: bool, archive: bool) -> int:
    q = {"path": dest, "noOverwriteDirNonDir": True, "copyUIDGID": archive or None}
    if src == "-":
        client.request("PUT", f"/containers/{cid}/archive", q,
                       body=iter(lambda: sys.stdin.buffer.read(1 << 16), b""),
                       headers={"Content-Type": "application/x-tar"}).close()
        return 0
    if not os.path.lexists(src):
        raise UsageError(f"could not find the file {src} on the local filesystem")
    src_is_dir = os.path.isdir(src) if (follow or not os.path.islink(src)) else False
    contents = src.endswith("/.") or src == "."
    st = container_stat(client, cid, dest)
    if st is not None and _is_dir(st):
        extract_dir, name = dest, os.path.basename(os.path.normpath(src))
    elif st is not None:
        if src_is_dir:
            raise UsageError(f"cannot copy a directory to a file: {cid}:{dest}")
        extract_dir, name = _parent(dest), os.path.basename(dest.rstrip("/"))
    else:
        if dest.endswith("/"):
            raise UsageError(f"destination directory {cid}:{dest} does not exist")
        extract_dir, name = _parent(dest), os.path.basename(dest.rstrip("/"))
        pst = container_stat(client, cid, extract_dir)
        if pst is None or not _is_dir(pst):
            raise UsageError(f"destination parent {cid}:{extract_dir} is not a directory")
        contents = False     # the directory becomes DEST
    sizes: list[int] = []

    def build(out: Any) -> None:
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as t:
            if src_is_dir and contents and st is not None and _is_dir(st):
                for child in sorted(os.listdir(src)):
                    sizes.append(_add(t, os.path.join(src, child), child, archive))
            else:
                sizes.append(_add(t, src, name, archive, follow))
    q["path"] = extract_dir
    client.request("PUT", f"/containers/{cid}/archive", q, body=tar_chunks(build),
                   headers={"Content-Type": "application/x-tar"}).close()
    return sum(sizes)


def tar_chunks(build: Any) -> Iterator[bytes]:
    """Run ``build(fileobj)`` in a thread, yielding what it writes (a large directory is
    streamed, never held in memory)."""
    import threading
    r, w = os.pipe()
    failed: list[BaseException] = []

    def work() -> None:
        try:
            with os.fdopen(w, "wb") as f:
                build(f)
        except BaseException as exc:        # re-raised in the caller's thread
            failed.append(exc)
    th = threading.Thread(target=work, daemon=True)
    th.start()
    with os.fdopen(r, "rb") as f:
        while True:
            chunk = f.read(1 << 16)
            if not chunk:
                break
            yield chunk
    th.join()
    if failed:
        raise failed[0]


def _parent(path: str) -> str:
    return os.path.dirname(path.rstrip("/")) or "/"


def _add(t: tarfile.TarFile, path: str, arc: str, archive: bool,
         follow_top: bool = False) -> int:
    size = 0

    def owner(ti: tarfile.TarInfo) -> tarfile.TarInfo:
        nonlocal size
        size += ti.size
        if not archive:                 # Docker: root-owned in the container unless -a
            ti.uid = ti.gid = 0
        ti.uname = ti.gname = ""
        return ti
    if follow_top and os.path.islink(path):
        path = os.path.realpath(path)
    t.add(path, arcname=arc, recursive=True, filter=owner)
    return size

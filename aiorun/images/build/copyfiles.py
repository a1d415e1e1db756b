"""COPY and ADD: files from the build context (or another stage's rootfs) into a mounted
snapshot rootfs. Everything here runs in a worker thread.

Every destination is resolved inside the rootfs (never following a link out of it) and every
source inside its root; ``ADD`` of a local tar unpacks it with the ``tar`` extraction filter.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
import tarfile
from pathlib import Path

from aiorun.core.safepath import resolve_in_root
from aiorun.errors import InvalidArgument
from aiorun.images.build.context import DockerIgnore
from aiorun.images.build.dockerfile import Heredoc, Instruction, expand_word
from aiorun.images.build.dockerfile.lines import heredoc_from_word
from aiorun.images.build.expand import expand_heredoc
from aiorun.images.build.stage import Stage


def copy_sources(st: Stage, ins: Instruction, rootfs: Path, src_root: Path,
                 ignore: DockerIgnore | None) -> None:
    """COPY/ADD ``ins`` of stage ``st``: copy its sources under ``src_root`` (the context, or
    another stage's rootfs; every path resolved inside it) to the destination inside
    ``rootfs``."""
    env = st.substitution_env()
    words = [expand_word(w, env, ins.escape) for w in ins.args]
    srcs, dest = words[:-1], words[-1]
    uid, gid = _parse_chown(ins.flags.get("chown"), rootfs, env, ins.escape)
    mode = None
    chmod = ins.flags.get("chmod")
    if chmod is not None:
        try:
            mode = int(expand_word(chmod, env, ins.escape), 8)
        except ValueError:
            raise InvalidArgument(f"invalid --chmod value {chmod!r}") from None
    wd = st.config.get("WorkingDir") or "/"
    dest_dir_syntax = dest.endswith("/") or dest in (".", "..") or dest.endswith("/.")
    if not dest.startswith("/"):
        dest = posixpath.join(wd, dest)
    dest = posixpath.normpath(dest)
    sources: list[str] = []
    docs = heredoc_sources(ins)
    for raw, s in zip(ins.args, srcs):
        if raw in docs:
            continue
        if "://" in s:
            raise InvalidArgument(f"{ins.cmd} from a URL ({s}) is not supported: "
                                  "aiorun build has no network access")
        sources += match_sources(s, src_root, ignore)
    if len(sources) + len(docs) > 1 and not dest_dir_syntax:
        raise InvalidArgument(f"When using {ins.cmd} with more than one source file, the "
                              "destination must be a directory and end with a /")
    for doc in docs.values():
        text = doc.text()
        if doc.expand:
            text = expand_heredoc(text, env, ins.escape)
        existing = resolve_in_root(rootfs, dest)
        target_path = posixpath.join(dest, posixpath.basename(doc.name)) \
            if dest_dir_syntax or existing.is_dir() else dest
        parent = mkdir_in_root(rootfs, posixpath.dirname(target_path) or "/")
        target = parent / posixpath.basename(target_path)
        _unlink_existing(target)
        with open(target, "xb") as fo:
            fo.write(text.encode())
        os.chmod(target, mode if mode is not None else 0o644)
        os.chown(target, uid, gid)
    for rel in sources:
        src = resolve_in_root(src_root, rel)
        try:
            sst = os.lstat(src)
        except FileNotFoundError:
            raise InvalidArgument(f"file not found in build context or excluded by "
                                  f".dockerignore: stat {rel}: file does not exist") from None
        if stat.S_ISDIR(sst.st_mode):
            target = mkdir_in_root(rootfs, dest)
            _copy_dir(src, target, rel, rootfs, dest, uid, gid, mode, ignore)
        elif ins.cmd == "ADD" and _is_archive(src):
            target = mkdir_in_root(rootfs, dest)
            _extract_archive(src, target)
        else:
            existing = resolve_in_root(rootfs, dest)
            if dest_dir_syntax or existing.is_dir():
                target_path = posixpath.join(dest, posixpath.basename(rel))
            else:
                target_path = dest
            parent = mkdir_in_root(rootfs, posixpath.dirname(target_path) or "/")
            _copy_file(src, parent / posixpath.basename(target_path), sst, uid, gid, mode)


def heredoc_sources(ins: Instruction) -> dict[str, Heredoc]:
    """A COPY/ADD's heredoc sources (``<<EOF``), by the argument that names them."""
    if ins.json is not None or not ins.heredocs:
        return {}
    by_name = {h.name: h for h in ins.heredocs}
    out: dict[str, Heredoc] = {}
    for raw in ins.args[:-1]:
        h = heredoc_from_word(raw)
        if h is not None and h.name in by_name:
            out[raw] = by_name[h.name]
    return out


def match_sources(pattern: str, root: Path, ignore: DockerIgnore | None) -> list[str]:
    """The context-relative paths a COPY/ADD source ``pattern`` names (globs expanded),
    minus what ``ignore`` excludes."""
    rel = posixpath.normpath("/" + pattern).lstrip("/") or "."
    if not any(c in rel for c in "*?["):
        if rel != "." and ignore is not None and ignore.excluded(rel):
            raise InvalidArgument(f"file not found in build context or excluded by "
                                  f".dockerignore: stat {pattern}: file does not exist")
        return [rel]
    import glob
    # glob in the source tree: symlinked directories are matched, never left through
    found = sorted(p for p in glob.glob(rel, root_dir=root, include_hidden=True)
                   if ignore is None or not ignore.excluded(p))
    if not found:
        raise InvalidArgument(f"no source files were specified (no match for {pattern!r})")
    return found


def _copy_dir(src: Path, target: Path, rel: str, rootfs: Path, dest: str,
              uid: int, gid: int, mode: int | None, ignore: DockerIgnore | None) -> None:
    """Copy the content of context dir ``src`` into ``target`` (inside the rootfs)."""
    with os.scandir(src) as it:
        entries = sorted(it, key=lambda e: e.name)
    for e in entries:
        erel = posixpath.join(rel, e.name) if rel != "." else e.name
        if ignore is not None and ignore.excluded(erel):
            continue
        cpath = posixpath.join(dest, e.name)
        st = e.stat(follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            sub = mkdir_in_root(rootfs, cpath)
            os.chmod(sub, mode if mode is not None else stat.S_IMODE(st.st_mode))
            os.lchown(sub, uid, gid)
            _copy_dir(Path(e.path), sub, erel, rootfs, cpath, uid, gid, mode, ignore)
            os.utime(sub, ns=(st.st_atime_ns, st.st_mtime_ns))
        else:
            d = target / e.name
            _copy_file(Path(e.path), d, st, uid, gid, mode)


def mkdir_in_root(rootfs: Path, path: str) -> Path:
    """``mkdir -p`` of container path ``path``, every component resolved inside ``rootfs``."""
    parts = [p for p in posixpath.normpath("/" + path).split("/") if p]
    cur = "/"
    host = Path(rootfs)
    for p in parts:
        cur = posixpath.join(cur, p)
        host = resolve_in_root(rootfs, cur)
        try:
            os.mkdir(host, 0o755)
        except FileExistsError:
            if not host.is_dir():
                raise InvalidArgument(f"cannot create directory {cur}: a file is in the way")
    return host


def _unlink_existing(d: Path) -> None:
    try:
        st = os.lstat(d)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        raise InvalidArgument(f"cannot copy over directory {d.name}")
    os.unlink(d)


def _copy_file(src: Path, d: Path, st: os.stat_result, uid: int, gid: int,
               mode: int | None) -> None:
    _unlink_existing(d)
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(src), d)
        os.lchown(d, uid, gid)
        return
    if not stat.S_ISREG(st.st_mode):
        return  # sockets, fifos, devices are not copied
    fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        with open(fd, "rb", closefd=False) as fi, open(d, "xb") as fo:
            shutil.copyfileobj(fi, fo, 1 << 20)
    finally:
        os.close(fd)
    os.chmod(d, mode if mode is not None else stat.S_IMODE(st.st_mode) & 0o777)
    os.chown(d, uid, gid)
    os.utime(d, ns=(st.st_atime_ns, st.st_mtime_ns))


def _is_archive(p: Path) -> bool:
    try:
        return p.is_file() and tarfile.is_tarfile(p)
    except OSError:
        return False


def _extract_archive(src: Path, target: Path) -> None:
    """ADD of a local tar (plain/gzip/bzip2/xz): unpacked into ``target``; nothing may land
    outside it (the ``tar`` filter refuses ``..``, absolute names and writes through links
    that leave ``target``); device nodes are skipped."""
    try:
        with tarfile.open(src, "r:*") as tar:
            for m in tar:
                if m.ischr() or m.isblk() or m.isfifo():
                    continue
                tar.extract(m, target, filter="tar")
    except (tarfile.TarError, OSError) as exc:
        raise InvalidArgument(f"cannot extract {src.name}: {exc}") from None


def _lookup(rootfs: Path, file: str, name: str) -> int | None:
    try:
        text = resolve_in_root(rootfs, file).read_text()
    except OSError:
        return None
    for line in text.splitlines():
        f = line.split(":")
        if len(f) > 2 and f[0] == name:
            try:
                return int(f[2])
            except ValueError:
                return None
    return None


def _parse_chown(spec: str | None, rootfs: Path, env: dict[str, str],
                 escape: str = "\\") -> tuple[int, int]:
    """``--chown=user[:group]`` (names looked up in the image's /etc/passwd and /etc/group)."""
    if not spec:
        return 0, 0
    spec = expand_word(spec, env, escape)
    user, _, group = spec.partition(":")

    def one(v: str, file: str, what: str) -> int:
        if v.isdigit():
            return int(v)
        n = _lookup(rootfs, file, v)
        if n is None:
            raise InvalidArgument(f"unable to find {what} {v!r} in the image's {file}")
        return n
    uid = one(user, "/etc/passwd", "user")
    if group:
        gid = one(group, "/etc/group", "group")
    elif user.isdigit():
        gid = uid
    else:
        gid = uid
        try:
            for line in resolve_in_root(rootfs, "/etc/passwd").read_text().splitlines():
                f = line.split(":")
                if len(f) > 3 and f[0] == user:
                    gid = int(f[3])
        except (OSError, ValueError):
            pass
    return uid, gid

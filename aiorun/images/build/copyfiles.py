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
from aiorun.images.build.flags import flag, flag_bool, flag_values
from aiorun.images.build.stage import Stage


def copy_sources(st: Stage, ins: Instruction, rootfs: Path, src_root: Path,
                 ignore: DockerIgnore | None, downloads: dict[str, Path] | None = None
                 ) -> None:
    """COPY/ADD ``ins`` of stage ``st``: copy its sources under ``src_root`` (the context, or
    another stage's rootfs; every path resolved inside it) to the destination inside
    ``rootfs``.

    ``--exclude=PATTERN`` (may repeat) leaves out what matches, relative to each source (a
    source file by its name); ``--parents`` keeps each source's path (from the context root,
    or from a ``/./`` pivot in the source) under the destination. ``downloads`` maps an ADD's
    URL sources to the files fetched for them (written with mode 0600, never unpacked).
    ``--chown`` names are looked up in ``rootfs`` (:func:`check_copy_flags` refuses them
    with ``--link``, whose rootfs is an empty layer)."""
    env = st.substitution_env()
    words = [expand_word(w, env, ins.escape) for w in ins.args]
    srcs, dest = words[:-1], words[-1]
    uid, gid = _parse_chown(flag(ins, "chown"), rootfs, env, ins.escape)
    mode = None
    chmod = flag(ins, "chmod")
    if chmod is not None:
        try:
            mode = int(expand_word(chmod, env, ins.escape), 8)
        except ValueError:
            raise InvalidArgument(f"invalid --chmod value {chmod!r}") from None
    excludes = [DockerIgnore([expand_word(p, env, ins.escape)])
                for p in flag_values(ins, "exclude")]
    parents = flag_bool(ins, "parents")
    wd = st.config.get("WorkingDir") or "/"
    dest_dir_syntax = dest.endswith("/") or dest in (".", "..") or dest.endswith("/.")
    if not dest.startswith("/"):
        dest = posixpath.join(wd, dest)
    dest = posixpath.normpath(dest)
    sources: list[tuple[str, str]] = []     # (path in src_root, path kept under dest)
    docs = heredoc_sources(ins)
    for raw, s in zip(ins.args, srcs):
        if raw in docs:
            continue
        if "://" in s:
            if downloads is None or s not in downloads:
                raise InvalidArgument(f"{ins.cmd} from a URL ({s}) is not supported here")
            sources.append((s, ""))
            continue
        pivot = ""          # --parents: the part before a "/./" is not kept
        bare = s
        while bare.startswith("./"):
            bare = bare[2:]
        if parents and "/./" in bare:
            pivot = posixpath.normpath("/" + bare.split("/./", 1)[0]).lstrip("/")
        for rel in match_sources(s, src_root, ignore):
            if _excluded_by(excludes, posixpath.basename(rel)):
                continue
            kept = rel if not pivot else posixpath.relpath(rel, pivot)
            sources.append((rel, kept if parents else ""))
    if (len(sources) + len(docs) > 1 or parents) and not dest_dir_syntax:
        raise InvalidArgument(f"When using {ins.cmd} with more than one source file, the "
                              "destination must be a directory and end with a /")
    for doc in docs.values():
        _write_heredoc(doc, rootfs, dest, dest_dir_syntax, env, ins.escape, mode, uid, gid)
    for rel, kept in sources:
        if rel in (downloads or {}):
            url_path = rel.split("?", 1)[0].split("#", 1)[0].rstrip("/")
            name = posixpath.basename(url_path.split("://", 1)[1].partition("/")[2]) or \
                "index.html"
            existing = resolve_in_root(rootfs, dest)
            target_path = posixpath.join(dest, name) if dest_dir_syntax or existing.is_dir() \
                else dest
            parent = mkdir_in_root(rootfs, posixpath.dirname(target_path) or "/")
            dl = (downloads or {})[rel]
            _copy_file(dl, parent / posixpath.basename(target_path), os.lstat(dl), uid, gid,
                       0o600 if mode is None else mode)
            continue
        src = resolve_in_root(src_root, rel)
        try:
            sst = os.lstat(src)
        except FileNotFoundError:
            raise InvalidArgument(f"file not found in build context or excluded by "
                                  f".dockerignore: stat {rel}: file does not exist") from None
        base = posixpath.join(dest, kept) if kept and kept != "." else dest
        if stat.S_ISDIR(sst.st_mode):
            hidden = ignore is not None and rel != "." and ignore.excluded(rel)
            top = None if hidden else mkdir_in_root(rootfs, base)
            _copy_dir(src, top, rel, rootfs, base, uid, gid, mode, ignore, excludes, "")
        elif ins.cmd == "ADD" and _is_archive(src):
            target = mkdir_in_root(rootfs, dest)
            _extract_archive(src, target)
        else:
            if kept:
                target_path = base
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


def _write_heredoc(doc: Heredoc, rootfs: Path, dest: str, dest_dir_syntax: bool,
                   env: dict[str, str], escape: str, mode: int | None, uid: int,
                   gid: int) -> None:
    """A heredoc source of COPY/ADD written as a file at (or into) ``dest``."""
    text = doc.text()
    if doc.expand:
        text = expand_heredoc(text, env, escape)
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


def _excluded_by(excludes: list[DockerIgnore], rel: str) -> bool:
    return any(x.excluded(rel) for x in excludes)


def match_sources(pattern: str, root: Path, ignore: DockerIgnore | None) -> list[str]:
    """The context-relative paths a COPY/ADD source ``pattern`` names (globs expanded),
    minus what ``ignore`` excludes (an excluded directory stays when a ``!`` rule may keep
    something inside it)."""
    rel = posixpath.normpath("/" + pattern).lstrip("/") or "."

    def visible(p: str) -> bool:
        if ignore is None or p == "." or not ignore.excluded(p):
            return True
        return ignore.has_exceptions and resolve_in_root(root, p).is_dir()
    if not any(c in rel for c in "*?["):
        if not visible(rel):
            raise InvalidArgument(f"file not found in build context or excluded by "
                                  f".dockerignore: stat {pattern}: file does not exist")
        return [rel]
    import glob
    # glob in the source tree: symlinked directories are matched, never left through
    found = sorted(p for p in glob.glob(rel, root_dir=root, include_hidden=True)
                   if visible(p))
    if not found:
        raise InvalidArgument(f"no source files were specified (no match for {pattern!r})")
    return found


def _copy_dir(src: Path, target: Path | None, rel: str, rootfs: Path, dest: str,
              uid: int, gid: int, mode: int | None, ignore: DockerIgnore | None,
              excludes: list[DockerIgnore], xrel: str) -> None:
    """Copy the content of source dir ``src`` (``rel`` in its root, ``xrel`` below the COPY's
    source, for ``--exclude``) into container path ``dest``; ``target`` is its host path, None
    until something is copied into it (made then: a directory the ignore rules exclude is
    walked for ``!`` exceptions, and appears only when one is kept)."""
    with os.scandir(src) as it:
        entries = sorted(it, key=lambda e: e.name)
    for e in entries:
        erel = posixpath.join(rel, e.name) if rel != "." else e.name
        exrel = posixpath.join(xrel, e.name) if xrel else e.name
        if _excluded_by(excludes, exrel):
            continue
        cpath = posixpath.join(dest, e.name)
        st = e.stat(follow_symlinks=False)
        if ignore is not None and ignore.excluded(erel):
            if stat.S_ISDIR(st.st_mode) and ignore.has_exceptions:
                _copy_dir(Path(e.path), None, erel, rootfs, cpath, uid, gid, mode, ignore,
                          excludes, exrel)
            continue
        if target is None:
            target = mkdir_in_root(rootfs, dest)
        if stat.S_ISDIR(st.st_mode):
            sub = mkdir_in_root(rootfs, cpath)
            os.chmod(sub, mode if mode is not None else stat.S_IMODE(st.st_mode))
            os.lchown(sub, uid, gid)
            _copy_dir(Path(e.path), sub, erel, rootfs, cpath, uid, gid, mode, ignore,
                      excludes, exrel)
            os.utime(sub, ns=(st.st_atime_ns, st.st_mtime_ns))
        else:
            _copy_file(Path(e.path), target / e.name, st, uid, gid, mode)


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


def check_copy_flags(ins: Instruction, env: dict[str, str]) -> None:
    """Refuse, before anything is copied, the COPY/ADD flag uses aiorun does not implement
    or BuildKit refuses (BuildKit's wording)."""
    link = flag_bool(ins, "link")
    flag_bool(ins, "parents")
    chown = flag(ins, "chown")
    if link and chown:
        user, _, group = expand_word(chown, env, ins.escape).partition(":")
        if not user.isdigit() or (group and not group.isdigit()):
            raise InvalidArgument(f"{ins.cmd} --link --chown={chown}: aiorun resolves user "
                                  "and group names in the image, which --link does not "
                                  "read; use numeric ids")
    if flag(ins, "keep-git-dir") is not None:
        raise InvalidArgument(f"{ins.cmd} --keep-git-dir: git sources are not supported by "
                              "aiorun")
    checksum = flag(ins, "checksum")
    if checksum is None:
        return
    words = [expand_word(w, env, ins.escape) for w in ins.args]
    if len(words) != 2:
        raise InvalidArgument("checksum can't be specified for multiple sources")
    if not words[0].lower().startswith(("http://", "https://")):
        raise InvalidArgument("checksum requires HTTP(S) or Git sources")
    algo, _, hexd = expand_word(checksum, env, ins.escape).partition(":")
    if algo != "sha256" or len(hexd) != 64 or any(c not in "0123456789abcdef" for c in hexd):
        raise InvalidArgument(f"invalid checksum digest format: {checksum!r} (want "
                              "sha256:<64 hex digits>)")

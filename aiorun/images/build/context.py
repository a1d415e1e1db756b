"""Build contexts: ``.dockerignore`` matching, making the context tar (CLI side) and unpacking
it safely (daemon side).

``.dockerignore`` follows Docker's rules: one pattern per line, ``#`` comments, Go
``filepath.Match`` syntax (``*``, ``?``, ``[...]``) plus ``**`` for any number of directories,
``!`` re-includes, the last matching pattern wins, and a pattern that matches a directory
excludes everything below it. Paths are cleaned and relative to the context root.
"""

from __future__ import annotations

import os
import posixpath
import re
import stat
import tarfile
from pathlib import Path
from typing import BinaryIO, Iterable

from aiorun.errors import InvalidArgument


def _clean(p: str) -> str:
    p = posixpath.normpath(p.strip().replace("\\", "/")).lstrip("/")
    return "" if p == "." else p


def _pattern_regex(pat: str) -> re.Pattern[str]:
    """Go filepath.Match + ``**``, anchored, for slash-separated relative paths."""
    i, n = 0, len(pat)
    out = ["^"]
    while i < n:
        c = pat[i]
        if c == "*":
            if i + 1 < n and pat[i + 1] == "*":
                i += 2
                if i < n and pat[i] == "/":  # "**/" = zero or more directories
                    i += 1
                    out.append("(?:.*/)?")
                else:
                    out.append(".*")
                continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = pat.find("]", i + 1)
            if j < 0:
                raise InvalidArgument(f"syntax error in .dockerignore pattern {pat!r}: "
                                      "missing ']'")
            body = pat[i + 1:j]
            if body.startswith("^"):
                body = "!" + body[1:]
            body = body.replace("\\", "\\\\")
            if body.startswith("!"):
                out.append("[^/" + body[1:] + "]")
            else:
                out.append("[" + body + "]")
            i = j
        elif c == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(pat[i]))
        else:
            out.append(re.escape(c))
        i += 1
    out.append("$")
    return re.compile("".join(out))


class DockerIgnore:
    """Compiled ``.dockerignore`` patterns."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.rules: list[tuple[bool, re.Pattern[str]]] = []   # (exclude?, regex)
        for raw in patterns:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            neg = line.startswith("!")
            if neg:
                line = line[1:].strip()
            pat = _clean(line)
            if not pat:
                continue
            self.rules.append((not neg, _pattern_regex(pat)))

    @classmethod
    def from_text(cls, text: str) -> "DockerIgnore":
        return cls(text.splitlines())

    @classmethod
    def from_dir(cls, root: str | os.PathLike[str], dockerfile: str | None = None
                 ) -> "DockerIgnore":
        """The rules of context ``root``: ``<dockerfile>.dockerignore`` next to the Dockerfile
        (context-relative ``dockerfile``) when there is one, else ``.dockerignore``."""
        text = ignore_text(root, dockerfile)
        return cls(()) if text is None else cls.from_text(text)

    @property
    def has_exceptions(self) -> bool:
        """Some rule re-includes (``!``): an excluded directory may hold kept entries."""
        return any(not ex for ex, _ in self.rules)

    def excluded(self, rel: str) -> bool:
        """Is the context path ``rel`` (or a parent directory of it) excluded?"""
        rel = _clean(rel)
        if not rel or not self.rules:
            return False
        parts = rel.split("/")
        candidates = ["/".join(parts[:k]) for k in range(1, len(parts) + 1)]
        result = False
        for exclude, rx in self.rules:
            if any(rx.match(c) for c in candidates):
                result = exclude
        return result


def ignore_text(root: str | os.PathLike[str], dockerfile: str | None = None,
                dockerfile_dir: str | os.PathLike[str] | None = None) -> str | None:
    """The ignore rules' text for a build of ``dockerfile``: ``<Dockerfile>.dockerignore``
    next to the Dockerfile (BuildKit's per-Dockerfile ignore file; ``dockerfile`` is relative
    to ``root``, or its directory is ``dockerfile_dir`` when it lives outside the context),
    else the context's ``.dockerignore``; None when there is neither."""
    candidates = []
    if dockerfile:
        base = Path(dockerfile_dir) if dockerfile_dir is not None else Path(root)
        candidates.append(base / (_clean(dockerfile) if dockerfile_dir is None
                                  else Path(dockerfile).name))
        candidates[0] = candidates[0].with_name(candidates[0].name + ".dockerignore")
    candidates.append(Path(root, ".dockerignore"))
    for c in candidates:
        try:
            return c.read_text()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            continue
    return None


def write_context_tar(root: str | os.PathLike[str], out: BinaryIO,
                      keep: Iterable[str] = ("Dockerfile", ".dockerignore"),
                      extra: dict[str, bytes] | None = None,
                      ignore_rules: str | None = None) -> None:
    """Tar the context directory ``root`` into ``out`` (uncompressed), leaving out what the
    ignore rules exclude (except the names in ``keep``); an excluded directory is still
    walked for ``!`` exceptions. Symlinks are stored as links. ``extra`` adds files (a
    Dockerfile from outside the context, or from stdin); their names and ``.dockerignore``
    are appended to the ``.dockerignore`` sent so that ``COPY .`` never copies them (as the
    docker CLI does).
    ``ignore_rules`` (the text of a per-Dockerfile ignore file) replaces the context's
    ``.dockerignore``, and is sent as the context's ``.dockerignore``."""
    import io
    root = os.fspath(root)
    text = ignore_rules
    if text is None:
        try:
            text = Path(root, ".dockerignore").read_text()
        except FileNotFoundError:
            text = None
    ignore = DockerIgnore.from_text(text or "")
    keep_set = {_clean(k) for k in keep}
    replace_ignore = ignore_rules is not None or bool(extra)
    sent_ignore = None
    if replace_ignore:
        # the added files and the generated .dockerignore itself are never copied (the
        # docker CLI does the same)
        sent_ignore = (text or "") + ("\n" if text and not text.endswith("\n") else "") + \
            "".join(f"{n}\n" for n in extra or {}) + (".dockerignore\n" if extra else "")
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        def walk(d: str, rel: str) -> None:
            with os.scandir(d) as it:
                entries = sorted(it, key=lambda e: e.name)
            for e in entries:
                r = f"{rel}/{e.name}" if rel else e.name
                if r == ".dockerignore" and sent_ignore is not None:
                    continue    # sent below, with the rules actually used
                if ignore.excluded(r) and r not in keep_set:
                    # an excluded dir may still hold re-included (!) entries, or the
                    # Dockerfile: descend
                    if e.is_dir(follow_symlinks=False) and (
                            ignore.has_exceptions
                            or any(k.startswith(r + "/") for k in keep_set)):
                        walk(e.path, r)
                    continue
                st = e.stat(follow_symlinks=False)
                if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)
                        or stat.S_ISLNK(st.st_mode)):
                    continue
                ti = tar.gettarinfo(e.path, r)
                ti.uid = ti.gid = 0
                ti.uname = ti.gname = ""
                if ti.isreg():
                    with open(e.path, "rb") as f:
                        tar.addfile(ti, f)
                else:
                    tar.addfile(ti)
                if stat.S_ISDIR(st.st_mode):
                    walk(e.path, r)
        walk(root, "")
        files = dict(extra or {})
        if sent_ignore is not None:
            files[".dockerignore"] = sent_ignore.encode()
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mode = 0o644
            tar.addfile(ti, io.BytesIO(data))


def extract_context(tar_path: str | os.PathLike[str], dest: str | os.PathLike[str]) -> None:
    """Unpack a context tar (plain, gzip, bzip2 or xz) into ``dest``: nothing may land outside
    ``dest`` (absolute names, ``..``, writes through links are refused), no device nodes, no
    setuid bits (Python's ``tar`` extraction filter)."""
    try:
        with tarfile.open(tar_path, "r:*") as tar:
            complete = False     # the last member was read to the end of its data
            while True:
                try:
                    m = tar.next()
                except tarfile.ReadError:
                    # The docker CLI's context with a Dockerfile added to it (-f outside the
                    # context, -f -) ends right after the last member's data: no padding, no
                    # end-of-archive blocks. Go's tar reader (dockerd) takes that as the end.
                    if complete:
                        break
                    raise
                if m is None:
                    break
                complete = False
                if m.ischr() or m.isblk() or m.isfifo():
                    continue
                tar.extract(m, dest, filter="tar")
                complete = True
    except (tarfile.TarError, OSError) as exc:
        raise InvalidArgument(f"invalid build context: {exc}") from None

"""The one atomic file write: readers (and a daemon restarted after ``kill -9``) see the old
content or the new, never a mix.

The data goes to a temporary file in the same directory (a rename is only atomic within one
file system), named ``<name>.tmp-<pid><random>`` so start-up sweeps recognise leftovers by the
``.tmp-`` mark, which is then renamed over the target. With ``durable=True`` (the default) the
file is fsynced before the rename and the directory after it, so the new content also
survives a power loss; hot paths that only need to survive a crash of the daemon pass
``durable=False`` and save the milliseconds an fsync costs.

Imports nothing but :mod:`os`: the spawner (whose start-up is on every container's start
path) uses it too.
"""

from __future__ import annotations

import os

#: The mark in a temporary file's name (``<name>.tmp-<pid><hex>``).
TMP_MARK = ".tmp-"


def write_atomic(path: str | os.PathLike[str], data: bytes, *, mode: int = 0o644,
                 durable: bool = True) -> None:
    """Replace ``path`` with ``data`` atomically (new files get ``mode``, less the umask).
    On failure the old content is untouched and no temporary file is left."""
    target = os.fspath(path)
    tmp = f"{target}{TMP_MARK}{os.getpid()}{os.urandom(4).hex()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if durable:
        fsync_dir(os.path.dirname(target) or ".")


def write_json_atomic(path: str | os.PathLike[str], obj: object, *, mode: int = 0o644,
                      durable: bool = True) -> None:
    """:func:`write_atomic` of ``obj`` as compact JSON."""
    import json  # not at module level: the spawner never writes JSON through here
    write_atomic(path, json.dumps(obj, separators=(",", ":")).encode(), mode=mode,
                 durable=durable)


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Make a rename (or a new file) in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

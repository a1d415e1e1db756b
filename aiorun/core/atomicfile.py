"""The one atomic file write: readers (and a daemon restarted after ``kill -9``) see the old
content or the new, never a mix.

The data goes to a temporary file in the same directory (a rename is only atomic within one
file system), which is then renamed over the target. With ``durable=True`` (the default) the
file is fsynced before the rename and the directory after it, so the new content also
survives a power loss; hot paths that only need to survive a crash of the daemon pass
``durable=False`` and save the milliseconds an fsync costs.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any


def write_atomic(path: str | os.PathLike[str], data: bytes, *, mode: int = 0o644,
                 durable: bool = True) -> None:
    """Replace ``path`` with ``data`` atomically (new files get ``mode``, less the umask)."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
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
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        _fsync_dir(target.parent)


def write_json_atomic(path: str | os.PathLike[str], obj: Any, *, mode: int = 0o644,
                      durable: bool = True) -> None:
    """:func:`write_atomic` of ``obj`` as JSON."""
    write_atomic(path, json.dumps(obj).encode(), mode=mode, durable=durable)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

"""Make tiny real images for tests and benches from Debian's busybox-static."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from pathlib import Path

BUSYBOX = "/bin/busybox"


def busybox_applets(busybox: str = BUSYBOX) -> list[str]:
    out = subprocess.run([busybox, "--list-full"], check=True, capture_output=True, text=True)
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def write_busybox_rootfs_tar(dest: Path, busybox: str = BUSYBOX) -> Path:
    """A rootfs tarball: /bin/busybox, one symlink per applet, and the usual empty dirs.

    Deterministic (fixed mtimes, sorted entries) so its digest is stable across runs.
    """
    if not os.path.exists(busybox):
        raise FileNotFoundError(f"{busybox} not found: install Debian's busybox-static")
    applets = busybox_applets(busybox)
    dirs = ["bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "tmp", "root", "proc", "sys",
            "dev", "var", "var/www", "home"]
    mtime = 1_700_000_000
    tmp = dest.with_suffix(".part")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for d in dirs:
            ti = tarfile.TarInfo(d)
            ti.type = tarfile.DIRTYPE
            ti.mode = 0o1777 if d == "tmp" else 0o755
            ti.mtime = mtime
            tar.addfile(ti)
        ti = tar.gettarinfo(busybox, "bin/busybox")
        ti.mtime, ti.uid, ti.gid, ti.uname, ti.gname = mtime, 0, 0, "root", "root"
        with open(busybox, "rb") as f:
            tar.addfile(ti, f)
        for path in sorted(set(applets)):
            rel = path.lstrip("/")
            if rel == "bin/busybox" or rel.count("/") == 0:
                continue
            ti = tarfile.TarInfo(rel)
            ti.type = tarfile.SYMTYPE
            ti.linkname = "/bin/busybox"
            ti.mode = 0o777
            ti.mtime = mtime
            tar.addfile(ti)
        for name, content in (("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"
                                             b"nobody:x:65534:65534:nobody:/home:/bin/false\n"),
                              ("etc/group", b"root:x:0:\nnogroup:x:65534:\n"),
                              ("var/www/index.html", b"hello from busybox\n")):
            ti = tarfile.TarInfo(name)
            ti.size = len(content)
            ti.mode = 0o644
            ti.mtime = mtime
            tar.addfile(ti, io.BytesIO(content))
    tmp.rename(dest)
    return dest

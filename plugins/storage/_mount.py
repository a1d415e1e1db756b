"""ctypes mount helpers shared by the built-in union-filesystem drivers.

Python 3.11 has no mount API. Everything here is chdir-free (the daemon is threaded) and
raises ``OSError`` naming the call. The new mount API (fsopen/fsconfig/fsmount/move_mount,
Linux >= 5.2; overlay's ``lowerdir+`` needs >= 6.8) takes one option per call, so it has no
one-page limit on the option string.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]

MNT_DETACH = 2
MS_REMOUNT = 32

# syscall numbers are the same on x86_64 and aarch64 for the new mount API (unified table).
_SYS = {"move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432}
FSOPEN_CLOEXEC = 1
FSCONFIG_SET_FLAG = 0
FSCONFIG_SET_STRING = 1
FSCONFIG_CMD_CREATE = 6
FSMOUNT_CLOEXEC = 1
MOVE_MOUNT_F_EMPTY_PATH = 0x4
AT_FDCWD = -100

NEW_MOUNT_API = platform.machine() in ("x86_64", "aarch64")


def _err(what: str) -> OSError:
    e = ctypes.get_errno()
    return OSError(e, f"{what}: {os.strerror(e)}")


def mount(source: str, target: str, fstype: str, flags: int = 0, data: str = "") -> None:
    if _libc.mount(source.encode(), os.fsencode(target), fstype.encode(), flags,
                   data.encode()) != 0:
        raise _err(f"mount -t {fstype} {source} {target} (options {len(data)} bytes)")


def umount(target: str, detach: bool = True) -> None:
    if _libc.umount2(os.fsencode(target), MNT_DETACH if detach else 0) != 0:
        raise _err(f"umount {target}")


# statx(2): its STATX_ATTR_MOUNT_ROOT bit (Linux >= 5.8) says "this is the root of a
# mount" in O(1); reading /proc/self/mountinfo is O(mounts), and with one overlay mount per
# running container that made every mount/unmount/removal linear in the number of
# containers (quadratic for a burst).
_SYS_STATX = {"x86_64": 332, "aarch64": 291}.get(platform.machine())
STATX_ATTR_MOUNT_ROOT = 0x2000
AT_STATX_DONT_SYNC = 0x4000
_STATX_SIZE = 256
_STX_ATTRIBUTES = 8            # offsetof(struct statx, stx_attributes)
_STX_ATTRIBUTES_MASK = 0x38    # offsetof(struct statx, stx_attributes_mask)


def _statx_mount_root(path: str) -> bool | None:
    """STATX_ATTR_MOUNT_ROOT of ``path`` (symlinks followed); None where statx or the
    attribute is not available (then the caller scans mountinfo). Raises OSError for a path
    that cannot be looked up."""
    if _SYS_STATX is None:
        return None
    buf = ctypes.create_string_buffer(_STATX_SIZE)
    r = _libc.syscall(ctypes.c_long(_SYS_STATX), ctypes.c_int(AT_FDCWD),
                      ctypes.c_char_p(os.fsencode(path)), ctypes.c_int(AT_STATX_DONT_SYNC),
                      ctypes.c_uint(0), buf)
    if r != 0:
        e = ctypes.get_errno()
        if e == errno.ENOSYS:
            return None
        raise OSError(e, f"statx {path}: {os.strerror(e)}")
    mask = int.from_bytes(buf.raw[_STX_ATTRIBUTES_MASK:_STX_ATTRIBUTES_MASK + 8], "little")
    if not mask & STATX_ATTR_MOUNT_ROOT:
        return None
    attrs = int.from_bytes(buf.raw[_STX_ATTRIBUTES:_STX_ATTRIBUTES + 8], "little")
    return bool(attrs & STATX_ATTR_MOUNT_ROOT)


def is_mountpoint(path: str) -> bool:
    """True when ``path`` is the mount point of a mount in our mount namespace.

    O(1) through statx where the kernel reports mount roots; else a scan of mountinfo."""
    try:
        root = _statx_mount_root(path)
    except OSError:
        return False
    if root is not None:
        return root
    return _in_mountinfo(path)


def _in_mountinfo(path: str) -> bool:
    want = os.path.realpath(path)
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            mp = line.split(b" ")[4].decode().replace("\\040", " ")
            if mp == want:
                return True
    return False


def fs_mount(fstype: str, target: str, options: list[tuple[str, str | None]]) -> None:
    """Mount ``fstype`` at ``target`` with the new mount API, one fsconfig call per option.

    ``options`` are ``(key, value)``; a None value sets a flag. The same key may repeat
    (overlay's ``lowerdir+``).
    """
    sc = _libc.syscall
    fs = sc(_SYS["fsopen"], ctypes.c_char_p(fstype.encode()), ctypes.c_uint(FSOPEN_CLOEXEC))
    if fs < 0:
        raise _err(f"fsopen({fstype})")
    mfd = -1
    try:
        for key, value in options:
            if value is None:
                r = sc(_SYS["fsconfig"], ctypes.c_int(fs), ctypes.c_uint(FSCONFIG_SET_FLAG),
                       ctypes.c_char_p(key.encode()), None, ctypes.c_int(0))
            else:
                r = sc(_SYS["fsconfig"], ctypes.c_int(fs), ctypes.c_uint(FSCONFIG_SET_STRING),
                       ctypes.c_char_p(key.encode()), ctypes.c_char_p(os.fsencode(value)),
                       ctypes.c_int(0))
            if r < 0:
                raise _err(f"fsconfig({fstype}, {key}={value})")
        if sc(_SYS["fsconfig"], ctypes.c_int(fs), ctypes.c_uint(FSCONFIG_CMD_CREATE), None,
              None, ctypes.c_int(0)) < 0:
            raise _err(f"fsconfig({fstype}, create)")
        mfd = sc(_SYS["fsmount"], ctypes.c_int(fs), ctypes.c_uint(FSMOUNT_CLOEXEC),
                 ctypes.c_uint(0))
        if mfd < 0:
            raise _err(f"fsmount({fstype})")
        if sc(_SYS["move_mount"], ctypes.c_int(mfd), ctypes.c_char_p(b""),
              ctypes.c_int(AT_FDCWD), ctypes.c_char_p(os.fsencode(target)),
              ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH)) < 0:
            raise _err(f"move_mount({fstype} -> {target})")
    finally:
        if mfd >= 0:
            os.close(mfd)
        os.close(fs)

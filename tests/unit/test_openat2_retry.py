"""openat2 retries the kernel's EAGAIN (a rename/mount raced a RESOLVE_IN_ROOT lookup)."""

from __future__ import annotations

import ctypes
import errno

import pytest

from aiorun.runtime import syscalls


class _FakeLibc:
    def __init__(self, failures: int, err: int) -> None:
        self.failures, self.err, self.calls = failures, err, 0

    def syscall(self, *args):
        self.calls += 1
        if self.calls <= self.failures:
            ctypes.set_errno(self.err)
            return -1
        return 7


@pytest.mark.parametrize("failures, err, result, calls", [
    (0, errno.EAGAIN, 7, 1),
    (3, errno.EAGAIN, 7, 4),
    (syscalls.OPENAT2_RETRIES, errno.EAGAIN, None, syscalls.OPENAT2_RETRIES),
    (1, errno.ENOENT, None, 1),          # other errors are not retried
])
def test_retry(monkeypatch, failures, err, result, calls) -> None:
    fake = _FakeLibc(failures, err)
    monkeypatch.setattr(syscalls, "_libc", fake)
    if result is None:
        with pytest.raises(OSError) as exc:
            syscalls.openat2(-100, "x", 0, 0)
        assert exc.value.errno == err
    else:
        assert syscalls.openat2(-100, "x", 0, 0) == result
    assert fake.calls == calls

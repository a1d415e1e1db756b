"""podman and skopeo write host paths even with their roots redirected (podman's lock file in
/dev/shm, a blob-info cache under /var/lib/containers, /run/containers/networks): the test
session (and the tests that run podman) remove what they made there, so the host is left as
they found it."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

TRACES = ("/dev/shm/libpod_lock", "/run/containers", "/var/lib/containers", "/run/libpod")


@contextmanager
def podman_traces_removed() -> Iterator[None]:
    """Around a test's use of podman: afterwards, each of :data:`TRACES` that did not exist
    before is removed (podman's own bind mounts under it first)."""
    before = {p for p in TRACES if os.path.lexists(p)}
    try:
        yield
    finally:
        for p in TRACES:
            if p in before or not os.path.lexists(p):
                continue
            with open("/proc/self/mountinfo") as f:
                mounts = [line.split()[4] for line in f]
            for m in sorted((m for m in mounts if m == p or m.startswith(p + "/")),
                            key=len, reverse=True):
                subprocess.run(["umount", "-l", m], capture_output=True)
            subprocess.run(["rm", "-rf", "--one-file-system", p], capture_output=True)

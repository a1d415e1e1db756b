"""Worker threads that create a layer's leaf entries (files, symlinks, FIFOs) concurrently.

Why: extracting a rootfs layer is bound by inode creation, not by bytes: 10,000 files are
10,000 ``open(O_CREAT)`` + owner/mode/mtime syscalls. Where each creation waits on the disk,
creations in other threads (the syscalls release the GIL) overlap those waits with each
other and with the parsing of the tar, which stays in one thread, in order. Where creation
is CPU in the kernel (this host) threads only add hand-offs: :data:`WORKERS` is 0 (inline).

Contract (kept by :func:`aiorun.images.layers.extract_tar`, the only user):

* The caller submits only work on a path that no in-flight task touches (:meth:`busy`), in a
  directory whose fd stays open until the work is done, and calls :meth:`drain` before any
  step that could touch an in-flight path: removing or replacing an entry, whiteouts, hard
  links to an in-flight file, creating a missing parent directory, and before it sets
  directory mtimes or closes directory fds.
* A task's exception is raised by the next :meth:`drain` (the first one in submission
  order); :meth:`close` waits for every task and swallows their errors (the caller is already
  unwinding and removes the half-made layer).
* Bytes held by queued tasks (data read from a stream) are bounded: past ``max_bytes`` the
  submitter waits for the queue to empty.
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import threading
from typing import Callable

#: Creation threads; 0 = every task inline, in the parsing thread (the default). Measured
#: on the Debian import here (2 shared cores, ext4 without a journal, where allocating an
#: inode is CPU in the kernel, not a wait on the disk): 2 threads made the unpacking ~40 %
#: slower than inline and 8 slower still, with more CPU in both (GIL hand-offs, contention
#: on the directories' locks); see bench/RESULTS.md, issue 16 "layer import and commit".
#: Kept for hosts whose disk makes each creation wait (set it > 0 there and measure).
WORKERS = 0
#: Data bytes that queued tasks may hold (streamed files are read before they are queued).
MAX_BYTES = 64 << 20

Task = Callable[[], int]   # returns the content bytes written


class LeafPool:
    def __init__(self, workers: int | None = None, max_bytes: int = MAX_BYTES) -> None:
        n = WORKERS if workers is None else workers
        #: 0 workers: every task runs inline, in :meth:`submit` (no threads at all)
        self._ex = cf.ThreadPoolExecutor(n, thread_name_prefix="aiorun-extract") if n else None
        self._futures: dict[str, cf.Future[int]] = {}
        self._max_bytes = max_bytes
        self._queued_bytes = 0
        self._lock = threading.Lock()
        self.written = 0

    def busy(self, rel: str) -> bool:
        """Is a task for ``rel`` still running or queued?"""
        f = self._futures.get(rel)
        return f is not None and not f.done()

    @property
    def pending(self) -> bool:
        return bool(self._futures)

    def submit(self, rel: str, task: Task, held_bytes: int = 0) -> None:
        """Queue ``task`` (which works on ``rel`` only); ``held_bytes`` of data it holds."""
        if self._ex is None:
            self.written += task()
            return
        if self._queued_bytes + held_bytes > self._max_bytes:
            self.drain()
        f = self._ex.submit(task)
        if held_bytes:
            with self._lock:
                self._queued_bytes += held_bytes
            f.add_done_callback(functools.partial(self._release, held_bytes))
        self._futures[rel] = f

    def _release(self, n: int, _f: object = None) -> None:
        with self._lock:
            self._queued_bytes -= n

    def drain(self) -> None:
        """Wait for every queued task; raise the first task error (in submission order)."""
        futures = list(self._futures.values())
        self._futures.clear()
        error: BaseException | None = None
        for f in futures:
            exc = f.exception()   # waits
            if exc is None:
                self.written += f.result()
            elif error is None:
                error = exc
        if error is not None:
            raise error

    def close(self) -> None:
        """Wait for every task (errors are dropped: the caller is unwinding) and stop the
        threads."""
        if self._ex is not None:
            self._ex.shutdown(wait=True, cancel_futures=True)
        self._futures.clear()

"""Where a layer-making step works: a :class:`Snapshot` (a storage-driver container over the
stage's layers, mounted), and a RUN step's process in one (:func:`run_step`).

A snapshot is noted in the build's work directory before it exists (so a daemon crash leaves
nothing :func:`~.workdirs.sweep_stale` cannot find) and is unmounted and removed when its
``async with`` ends, however it ends (the clean-up is shielded from cancellation).
:meth:`Snapshot.diff` turns what the step changed into a layer tar (the init files filtered
out), or None when it changed nothing.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from types import TracebackType
from typing import Any, AsyncIterator

import anyio
import anyio.to_thread

from aiorun.core.faultpoint import fault_point
from aiorun.errors import AiorunError
from aiorun.images.build.host import BuildError, BuildHost, CommandDidNotRun, RunStep
from aiorun.images.build.output import stderr_text
from aiorun.images.build.workdirs import note_snapshot
from aiorun.images.diff import filter_diff, has_excluded, tar_is_empty


def hosts_file(hostname: str, extra_hosts: list[tuple[str, str]]) -> bytes:
    """A RUN step's ``/etc/hosts``: loopback names, ``--add-host`` entries, its hostname."""
    return (b"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
            + "".join(f"{addr}\t{name}\n" for name, addr in extra_hosts).encode()
            + f"127.0.0.1\t{hostname}\n".encode())


class Snapshot:
    """A storage-driver container over ``layers`` (bottom first) with ``init_files``, mounted
    at :attr:`rootfs` inside the ``async with``."""

    def __init__(self, host: BuildHost, work: Path, layers: list[str],
                 init_files: dict[str, bytes]) -> None:
        self.host = host
        self.work = work
        self.layers = list(layers)
        self.init_files = dict(init_files)
        self.id = secrets.token_hex(32)
        self.rootfs = Path()
        self._mounted = False
        self._raw = work / f"{self.id[:12]}.diff.tar"
        self._layer = work / f"{self.id[:12]}.layer.tar"

    async def __aenter__(self) -> "Snapshot":
        storage = self.host.storage
        await anyio.to_thread.run_sync(note_snapshot, self.work, self.id)
        try:
            await anyio.to_thread.run_sync(storage.create_container, self.id, self.layers,
                                           self.init_files)
            self.rootfs = Path(await anyio.to_thread.run_sync(storage.mount, self.id))
            self._mounted = True
        except BaseException:
            await self._cleanup()
            raise
        return self

    async def __aexit__(self, et: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self._cleanup()

    async def _cleanup(self) -> None:
        storage = self.host.storage

        def cleanup() -> None:
            if self._mounted:
                storage.unmount(self.id)
                self._mounted = False
            storage.remove_container(self.id)
            self._raw.unlink(missing_ok=True)
            self._layer.unlink(missing_ok=True)
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(cleanup)

    async def diff(self) -> Path | None:
        """Unmount, and write what changed as a layer tar (init files filtered out); None
        when nothing changed. The file is removed with the snapshot."""
        storage = self.host.storage
        await anyio.to_thread.run_sync(storage.unmount, self.id)
        self._mounted = False

        def diff() -> bool:
            with open(self._raw, "wb") as f:
                storage.diff(self.id, f)
            if has_excluded(self._raw):
                filter_diff(self._raw, self._layer)
                self._raw.unlink()
            else:
                os.replace(self._raw, self._layer)
            return not tar_is_empty(self._layer)
        return self._layer if await anyio.to_thread.run_sync(diff) else None


async def run_step(host: BuildHost, step: RunStep, quiet: bool
                   ) -> AsyncIterator[dict[str, Any]]:
    """Run ``step`` and stream its output (stderr marked); :class:`BuildError` when it could
    not run or exited non-zero."""
    argv = step.argv
    try:
        async with host.run_command(step) as proc:
            async for stream, data in proc.output():
                if not quiet:
                    text = data.decode(errors="replace")
                    yield {"stream": stderr_text(text) if stream == 2 else text}
            exit_code = await proc.wait()
            fault_point("build.step")
    except BuildError:
        raise
    except AiorunError as exc:
        code = exc.exit_code if isinstance(exc, CommandDidNotRun) else None
        raise BuildError(f"The command '{' '.join(argv)}' could not run: {exc.message}"
                         + (f" (exit code {code})" if code else "")) from None
    if exit_code != 0:
        raise BuildError(f"The command '{' '.join(argv)}' returned a non-zero code: "
                         f"{exit_code}")

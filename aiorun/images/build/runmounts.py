"""What a RUN step gets besides its command: ``--network``, ``--mount``, a heredoc script.

* :func:`check_run_flags` is the parse-time check of a RUN's flags (BuildKit's wording);
  what aiorun does not implement is refused by name there, before any step runs.
* :class:`RunSetup` prepares a step's mounts on the host side and removes, after the step,
  everything it put into the snapshot (mount points it had to create), so none of it ends up
  in the layer or the history.

``--network``: ``none`` and ``default`` run the step as every aiorun RUN step runs (its own
network namespace, loopback only); ``host`` needs BuildKit's ``network.host`` entitlement,
which aiorun build does not grant: refused.

A ``RUN <<EOF`` whose script starts with ``#!`` runs as a file, as BuildKit does: the script is
bind-mounted read-only at ``/dev/pipes/<name>`` (inside the step's own /dev tmpfs).
"""

from __future__ import annotations

import os
import posixpath
from pathlib import Path

from aiorun.images.build.dockerfile.config import heredoc_script, heredoc_script_path
from aiorun.images.build.dockerfile.parser import Instruction
from aiorun.images.build.flags import Flags
from aiorun.images.build.host import RunMount

NETWORKS = ("default", "none", "host")


def check_run_flags(flags: Flags) -> str | None:
    """The problem with a RUN's flags, or None."""
    for name, value in flags:
        if name == "network":
            if value not in NETWORKS:
                return f"unsupported network mode {value!r} (use default, none or host)"
            if value == "host":
                return ("RUN --network=host needs the network.host entitlement, which aiorun "
                        "build does not grant")
        elif name != "mount":
            return f"RUN --{name} is not supported by aiorun"
        else:
            return "RUN --mount is not supported by aiorun"
    return None


class RunSetup:
    """The host-side preparation of one RUN step (call :meth:`prepare` and :meth:`cleanup`
    in a worker thread). ``work`` is a fresh directory of the build's for this step."""

    def __init__(self, ins: Instruction, work: Path, rootfs: Path) -> None:
        self.ins = ins
        self.work = work
        self.rootfs = rootfs
        self._stubs: list[str] = []      # mount points created in the snapshot, deepest last

    def network(self) -> str:
        """The runtime network mode of the step ("none": loopback only)."""
        return "none"

    def prepare(self) -> list[RunMount]:
        """The step's mounts (files they need are written under ``work``)."""
        mounts: list[RunMount] = []
        script = heredoc_script(self.ins)
        if script is not None:
            pipes = self.work / "pipes"
            pipes.mkdir(parents=True, exist_ok=True)
            name = posixpath.basename(self.ins.heredocs[0].name) or "script"
            f = pipes / name
            f.write_bytes(script)
            os.chmod(f, 0o755)
            mounts.append(RunMount(destination=heredoc_script_path(self.ins),
                                   source=str(f), readonly=True))
        return mounts

    def cleanup(self) -> None:
        """Remove the mount points this step had to create in the snapshot (empty ones)."""
        for path in reversed(self._stubs):
            try:
                host = self.rootfs / path.lstrip("/")
                if host.is_dir() and not host.is_symlink():
                    host.rmdir()
                else:
                    host.unlink()
            except OSError:
                pass

"""The storage driver interface.

A storage driver turns image layers (OCI tar diffs) into something it can stack, and gives
every container a root filesystem made of::

    image layers (read-only, shared)  +  init layer (per container, or shared read-only by
    containers with the same init files)  +  read-write layer (per container)

Third parties implement this; keep to the contract below and run the conformance kit in
``aiorun.testing`` against your driver.

Contract
--------
* Layers are identified by the engine-chosen ``layer_id`` (the hex of the layer's uncompressed
  diff digest, without ``sha256:``). A layer's content depends only on its own diff, never on
  its parent, so one unpacked layer is shared by every image that lists it.
* ``apply_layer`` is atomic: on any error nothing of the layer remains and the error is raised
  as :class:`aiorun.errors.InvalidArgument` naming the bad entry. It never writes outside the
  layer's own directory (``..``, absolute paths, links pointing outside and then written
  through), never creates device nodes other than whiteouts, and strips setuid/setgid bits.
  OCI whiteouts (``.wh.NAME``, ``.wh..wh..opq``) are converted to the driver's own form.
* ``create_container`` makes the init and read-write layers. ``init_files`` maps absolute
  container paths to content; they belong to the init layer and are never part of ``diff``.
* ``mount`` returns the path of the assembled rootfs on the host and is idempotent;
  ``unmount`` undoes it and is idempotent too. The engine calls ``unmount`` before
  ``remove_container``, or ``discard_container`` (both in one: the tree renamed out of sight,
  deleted later by the engine or by ``cleanup()``).
* ``diff`` writes a tar of the read-write layer only, with OCI whiteouts for deleted files
  and opaque directories. It works whether or not the container is mounted.
* Everything half-made is cleaned by ``cleanup()`` (called at daemon start); ``layers()``
  lists complete layers so the image store can free orphans.
* Drivers are synchronous and may block; the engine calls them from a worker thread.
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import BinaryIO, ClassVar, Mapping, Sequence


class StorageDriver(abc.ABC):
    #: The name users pass to ``--storage-driver``.
    name: ClassVar[str]

    def __init__(self, home: Path, options: Mapping[str, str] | None = None) -> None:
        """``home`` is this driver's private directory (``<root>/storage/<name>``)."""
        self.home = home
        self.options = dict(options or {})

    @classmethod
    @abc.abstractmethod
    def unavailable_reason(cls, home: Path) -> str | None:
        """None when the driver can work on this host at ``home``, else why it cannot."""

    # --- layers -----------------------------------------------------------------------
    @abc.abstractmethod
    def apply_layer(self, layer_id: str, diff: BinaryIO) -> int:
        """Unpack an uncompressed OCI tar diff as layer ``layer_id``; return its size in bytes."""

    @abc.abstractmethod
    def has_layer(self, layer_id: str) -> bool: ...

    @abc.abstractmethod
    def remove_layer(self, layer_id: str) -> None:
        """Remove a layer; missing layers are not an error."""

    @abc.abstractmethod
    def layer_size(self, layer_id: str) -> int: ...

    def layers(self) -> list[str]:
        """Ids of the complete layers this driver holds (the image store removes the ones no
        image references after a crash). Optional: the default lists none."""
        return []

    # --- containers -------------------------------------------------------------------
    @abc.abstractmethod
    def create_container(self, container_id: str, layers: Sequence[str],
                         init_files: Mapping[str, bytes]) -> None:
        """Prepare init + rw layers over ``layers`` (bottom first)."""

    @abc.abstractmethod
    def mount(self, container_id: str) -> Path:
        """Assemble the rootfs and return its host path (idempotent)."""

    @abc.abstractmethod
    def unmount(self, container_id: str) -> None: ...

    @abc.abstractmethod
    def diff(self, container_id: str, out: BinaryIO) -> None:
        """Write the read-write layer as an uncompressed tar with OCI whiteouts."""

    @abc.abstractmethod
    def remove_container(self, container_id: str) -> None:
        """Remove init + rw layers; missing is not an error."""

    def discard_container(self, container_id: str) -> Path | None:
        """Unmount the container and take its init + rw layers out of sight at once, leaving
        the deletion of the tree to the caller (a removal answers before it is deleted).
        Returns the path still to delete, or None when nothing is left; that path must be
        one ``cleanup()`` deletes if the caller never does (a daemon killed meanwhile).
        Missing is not an error. The default unmounts and removes (returns None)."""
        self.unmount(container_id)
        self.remove_container(container_id)
        return None

    @abc.abstractmethod
    def rw_path(self, container_id: str) -> Path:
        """The host directory holding the container's own changes (for volume seeding etc.)."""

    def container_metadata(self, container_id: str) -> dict[str, str]:
        """``GraphDriver.Data`` for inspect (LowerDir, UpperDir, WorkDir, MergedDir...)."""
        return {}

    def status(self) -> list[tuple[str, str]]:
        """Key/value pairs for ``aiorun info`` (``DriverStatus``)."""
        return []

    def cleanup(self) -> None:
        """Called at daemon start: remove half-made layers/containers left by a crash."""

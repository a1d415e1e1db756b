"""Creating a container: validate the request, resolve the image, reserve the name and make
the rootfs layers and the container's directory (removed again if anything fails)."""

from __future__ import annotations

import logging
import secrets
import shutil
import time
from typing import Any

import anyio
import anyio.to_thread

from aiorun.core import mounts as cmounts
from aiorun.core import ports as cports
from aiorun.core import spec as cspec
from aiorun.core.faultpoint import fault_point
from aiorun.engine.containers import runopts
from aiorun.engine.containers.base import RoomBase
from aiorun.engine.containers import links
from aiorun.engine.containers.records import Container
from aiorun.engine.containers.network import pin_joined_container
from aiorun.errors import InvalidArgument, NotFound, Unavailable

log = logging.getLogger("aiorun.containers")

#: Files every rootfs gets empty (bind-mount targets of the container's own copies).
INIT_FILES = ("/etc/hosts", "/etc/hostname", "/etc/resolv.conf")


def validate_mounts_and_ports(spec: cspec.CreateSpec) -> None:
    """Reject bad ``-v``/``--mount``/``-p`` at create time, as Docker does (nothing is made)."""
    hc = spec.host_config
    if hc.get("Mounts") is not None and not (isinstance(hc["Mounts"], list) and
                                             all(isinstance(m, dict) for m in hc["Mounts"])):
        raise InvalidArgument("HostConfig.Mounts must be a list of objects")
    cmounts.collect(hc.get("Binds") or None, hc.get("Mounts") or None,
                    list(spec.config.get("Volumes") or {}))
    cports.from_port_bindings(hc.get("PortBindings") or None)


class CreateRoom(RoomBase):
    """``create``."""

    async def create(self, body: dict[str, Any], name: str | None = None) -> str:
        """Validate, resolve the image, make the rootfs layers; returns the new id."""
        if not isinstance(body, dict):
            raise InvalidArgument("the create request body must be a JSON object")
        if name:
            name = cspec.validate_name(name)
            self._check_name_free(name)
        ref = body.get("Image")
        if not ref or not isinstance(ref, str):
            raise InvalidArgument("Config.Image is required: no image given")
        if self.engine.images is None:
            raise Unavailable("the image store is not available in this daemon")
        try:
            image = self.engine.images.resolve(ref)
        except NotFound:
            raise NotFound(f"No such image: {ref}") from None
        cid = secrets.token_hex(32)
        spec = cspec.merge(body, image.config, container_id=cid, image_ref=ref)
        validate_mounts_and_ports(spec)
        pin_joined_container(spec.host_config, self.get)
        runopts.check_at_create(self.engine.networks, spec.host_config, spec.networking_config)
        if not name:
            name = cspec.random_name(self._names)
        self._check_name_free(name)
        links.check_at_create(self, spec.host_config, name)     # --link: Docker's form
        if self.engine.storage is None:
            raise Unavailable("no storage driver is available in this daemon")
        self._names[name] = cid                      # reserve the name across the awaits
        c = Container(id=cid, name=name, created_ns=time.time_ns(), image_id=image.id,
                      config=spec.config, host_config=spec.host_config, path=spec.path,
                      args=spec.args, driver=self.engine.storage.name,
                      networking_config=spec.networking_config)
        c.network_settings = self._idle_network_settings(c)
        try:
            await anyio.to_thread.run_sync(self._create_sync, c, list(image.layers))
            await self._create_mounts(c)
        except BaseException:
            self._names.pop(name, None)
            with anyio.CancelScope(shield=True):
                if self.engine.volumes is not None:
                    await self.engine.volumes.release(cid, remove_anonymous=True)
                await self._discard_storage(cid)
                await anyio.to_thread.run_sync(shutil.rmtree, self._dir(cid), True)
            raise
        self._by_id[cid] = c
        log.info("container %s created (name %s, image %s)", cid, name, image.id)
        self._emit("create", c)
        return cid

    async def _create_mounts(self, c: Container) -> None:
        """Volumes are made at create, so inspect shows ``Mounts`` before the first start
        (seeded from the image at that start)."""
        vm = self.engine.volumes
        hc = c.host_config
        if vm is None or not (hc.get("Binds") or hc.get("Mounts") or c.config.get("Volumes")):
            return
        _specs, c.mounts = await vm.mounts_for(
            c.id, binds=hc.get("Binds") or None, mounts=hc.get("Mounts") or None,
            image_volumes=c.config.get("Volumes") or None, rootfs=None)
        await anyio.to_thread.run_sync(self._save_sync, c)

    def _create_sync(self, c: Container, layers: list[str]) -> None:
        """(worker thread) The container's directory, rootfs layers and files, then its
        record, written last and durably: a directory without a record is a create a crash
        cut short, which the next daemon start removes with its storage (lifecycle.py; the
        record's absence is the marker, no extra file)."""
        d = self._dir(c.id)
        d.mkdir(parents=True)
        self.engine.storage.create_container(c.id, layers, {p: b"" for p in INIT_FILES})
        fault_point("create.storage")
        for f in ("hosts", "hostname", "resolv.conf"):
            (d / f).touch()
        self.log_path(c.id).touch()
        self._save_sync(c, sync=True)

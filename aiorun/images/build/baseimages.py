"""The images a build names (``FROM image``, ``COPY --from=image``, ``RUN --mount=...,
from=image``): found in the store, or pulled when missing (with ``--pull``: pulled again,
once per build). Stages that name one image at once wait for the one pull.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

from aiorun.errors import AiorunError, NotFound
from aiorun.images.build.dockerfile import Instruction
from aiorun.images.build.host import BuildError, BuildHost

if TYPE_CHECKING:  # pragma: no cover
    from aiorun.images.store import Image


class ImageResolver:
    """Resolves image references for one build."""

    def __init__(self, host: BuildHost, pull: bool) -> None:
        self.host = host
        self.pull = pull
        self._pulled: set[str] = set()
        self._locks: dict[str, anyio.Lock] = {}

    async def resolve(self, name: str, ins: Instruction) -> Image:
        """The image ``name``; :class:`BuildError` naming ``ins`` when it is missing and
        cannot be pulled."""
        async with self._locks.setdefault(name, anyio.Lock()):
            if not (self.pull and name not in self._pulled):
                try:
                    return self.host.images.resolve(name)
                except NotFound:
                    pass
            self._pulled.add(name)
            try:
                return await self.host.pull_image(name)
            except AiorunError as exc:
                raise BuildError(f"{ins.cmd} {name} (Dockerfile line {ins.line}): no such "
                                 f"image here, and pulling it failed: {exc.message}") from None

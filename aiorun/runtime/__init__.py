"""The runtime: the only part of aiorun that touches namespaces, mounts, cgroups and
capabilities. The engine uses :class:`aiorun.runtime.Runtime` (see :mod:`.api`).

Exports are lazy: the spawner imports submodules of this package and must not pull in anyio.
"""

from __future__ import annotations

#: Not ``typing.TYPE_CHECKING``: importing typing costs the spawner's start (mypy honours
#: a module constant of this name too).
TYPE_CHECKING = False
if TYPE_CHECKING:                         # the type checker sees the real names
    from .api import Runtime
    from .exits import ExecFailed, parse_signal, read_exit_status

__all__ = ["Runtime", "ExecFailed", "read_exit_status", "parse_signal"]


def __getattr__(name: str) -> object:
    """``from aiorun.runtime import Runtime`` etc., imported on first use."""
    if name == "Runtime":
        from .api import Runtime
        return Runtime
    if name in __all__:
        from . import exits
        return getattr(exits, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

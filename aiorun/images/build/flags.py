"""Reading an instruction's flags (``COPY --from=x``, ``--exclude`` repeated...).

The builder reads flags only through these two functions, so the shape of
``Instruction.flags`` (a dict today; an ordered list of ``(name, value)`` pairs once the parser
keeps repeated flags) is known in this one place.
"""

from __future__ import annotations

from typing import Any

from aiorun.errors import InvalidArgument
from aiorun.images.build.dockerfile import Instruction


def _pairs(ins: Instruction) -> list[tuple[str, str]]:
    flags: Any = ins.flags
    if isinstance(flags, dict):
        return list(flags.items())
    return [(str(k), str(v)) for k, v in flags]


def flag_values(ins: Instruction, name: str) -> list[str]:
    """Every value of flag ``--name``, in order (``--exclude`` may repeat)."""
    return [v for k, v in _pairs(ins) if k == name]


def flag(ins: Instruction, name: str) -> str | None:
    """The value of flag ``--name`` (the last one when repeated), None when absent; a bare
    ``--name`` is ``"true"``."""
    vals = flag_values(ins, name)
    return vals[-1] if vals else None


def flag_bool(ins: Instruction, name: str) -> bool:
    """A boolean flag (``--link``, ``--link=true``, ``--link=false``)."""
    v = flag(ins, name)
    if v is None:
        return False
    if v.lower() in ("", "true", "1"):
        return True
    if v.lower() in ("false", "0"):
        return False
    raise InvalidArgument(f"invalid boolean value {v!r} for --{name}")

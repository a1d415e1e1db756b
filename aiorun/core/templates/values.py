"""Template values the way Go's text/template sees them: the missing-key marker, truth, and
how a value prints (``%v``)."""

from __future__ import annotations

from typing import Any

from aiorun.errors import InvalidArgument


class TemplateError(InvalidArgument):
    pass


class _Missing:
    """A missing map key: prints as ``<no value>``, is false, and is nil for functions."""

    def __repr__(self) -> str:
        return "<no value>"


MISSING = _Missing()


def go_str(v: Any) -> str:
    """How Go's fmt prints a value with %v."""
    if v is MISSING:
        return "<no value>"
    if v is None:
        return "<nil>"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, float):
        # Go's %v uses the shortest repr, switching to exponent form at 1e21
        if v.is_integer() and abs(v) < 1e21:
            return str(int(v))
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + " ".join(go_str(x) for x in v) + "]"
    if isinstance(v, dict):
        return "map[" + " ".join(f"{go_str(k)}:{go_str(v[k])}" for k in sorted(v, key=str)) + "]"
    return str(v)


def truth(v: Any) -> bool:
    if v is MISSING or v is None:
        return False
    if isinstance(v, (bool, int, float, str, list, tuple, dict)):
        return bool(v)
    return True

"""An instruction's flags (``COPY --from=x``, ``RUN --mount=... --mount=...``), as BuildKit
splits them off the instruction line.

:class:`Flags` keeps them in order, repetitions included (``RUN --mount`` may appear several
times), with their spelling: ``raw`` is what BuildKit's AST dump shows (``--link``,
``--from=build``, quotes and backslashes already processed). The parser checks names,
repetition and the need for a value per instruction (:func:`check`), so by the time a builder
reads them a non-repeatable flag appears at most once and a string flag has a value.

Accessors: ``"from" in flags``, ``flags.get("from")`` (the value, or the default when absent;
``""`` for a bare ``--name``), ``flags.get_all("mount")`` (every value, in order),
``flags.is_true("link")`` (a boolean flag given bare or ``=true``), iteration over
``(name, value)`` pairs (``value`` is ``None`` for a bare flag).

The builder reads an instruction's flags through :func:`flag`, :func:`flag_values` and
:func:`flag_bool` (by instruction, so call sites stay short).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator, overload

if TYPE_CHECKING:   # the parser imports this module: no runtime import back
    from aiorun.images.build.dockerfile import Instruction


class Flags:
    """Ordered ``(name, value)`` pairs; ``value`` is None for a bare ``--name``."""

    __slots__ = ("items", "raw")

    def __init__(self, raw: list[str] | tuple[str, ...] = ()) -> None:
        self.raw: list[str] = list(raw)
        self.items: list[tuple[str, str | None]] = []
        for word in self.raw:
            name, eq, value = word.removeprefix("--").partition("=")
            self.items.append((name, value if eq else None))

    @classmethod
    def of(cls, **values: str) -> "Flags":
        """Flags from keyword values (``Flags.of(chown="1:1")``; ``_`` in a name is ``-``)."""
        return cls([f"--{k.replace('_', '-')}={v}" for k, v in values.items()])

    def __contains__(self, name: object) -> bool:
        return any(n == name for n, _ in self.items)

    def __iter__(self) -> Iterator[tuple[str, str | None]]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __bool__(self) -> bool:
        return bool(self.items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Flags):
            return self.items == other.items
        if isinstance(other, dict):   # handy in tests: {"chown": "1:1"}
            return dict(self.as_dict()) == other and len(self.items) == len(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"Flags({self.raw!r})"

    def names(self) -> list[str]:
        """The flag names in order (repeated names repeated)."""
        return [n for n, _ in self.items]

    @overload
    def get(self, name: str) -> str | None: ...
    @overload
    def get(self, name: str, default: str) -> str: ...

    def get(self, name: str, default: str | None = None) -> str | None:
        """The value of flag ``name`` (the first one if repeated): ``""`` for a bare
        ``--name``, ``default`` when absent."""
        for n, v in self.items:
            if n == name:
                return v if v is not None else ""
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value of a repeatable flag, in order."""
        return [v if v is not None else "" for n, v in self.items if n == name]

    def is_true(self, name: str) -> bool:
        """A boolean flag: set bare (``--link``) or ``=true`` (any case)."""
        for n, v in self.items:
            if n == name:
                return v is None or v.lower() == "true"
        return False

    def as_dict(self) -> dict[str, str]:
        """name → value (the first of repeated ones; ``""`` for bare)."""
        out: dict[str, str] = {}
        for n, v in self.items:
            out.setdefault(n, v if v is not None else "")
        return out


def flag_values(ins: "Instruction", name: str) -> list[str]:
    """Every value of flag ``--name``, in order (``--exclude``, ``--mount`` may repeat);
    ``"true"`` for a bare ``--name``."""
    return [v if v is not None else "true" for n, v in ins.flags if n == name]


def flag(ins: "Instruction", name: str) -> str | None:
    """The value of flag ``--name``, None when absent; a bare ``--name`` is ``"true"``.

    The parser (:func:`check`) refuses a non-repeatable flag given twice, so there is one."""
    vals = flag_values(ins, name)
    return vals[-1] if vals else None


def flag_bool(ins: "Instruction", name: str) -> bool:
    """A boolean flag (``--link``, ``--link=true``, ``--link=false``); :func:`check` has
    already refused any other value."""
    return ins.flags.is_true(name)


#: Flag kinds, as BuildKit declares them per instruction.
BOOL, STRING, STRINGS = "bool", "string", "strings"

#: The flags each instruction takes (BuildKit's frontend 1.x set, minus what aiorun refuses).
SPECS: dict[str, dict[str, str]] = {
    "ADD": {"chown": STRING, "chmod": STRING, "link": BOOL, "keep-git-dir": BOOL,
            "checksum": STRING, "exclude": STRINGS},
    "COPY": {"chown": STRING, "chmod": STRING, "from": STRING, "link": BOOL,
             "parents": BOOL, "exclude": STRINGS},
    "FROM": {"platform": STRING},
    "RUN": {"mount": STRINGS, "network": STRING, "security": STRING},
    "HEALTHCHECK": {"interval": STRING, "timeout": STRING, "start-period": STRING,
                    "start-interval": STRING, "retries": STRING},
}


def check(cmd: str, flags: Flags) -> str | None:
    """The problem with ``cmd``'s flags in BuildKit's words, or None.

    Unknown names, a non-repeatable flag given twice, a string flag without ``=value``, a
    boolean flag with a value other than true/false."""
    spec = SPECS.get(cmd, {})
    seen: set[str] = set()
    for name, value in flags:
        kind = spec.get(name)
        if kind is None:
            return f"unknown flag: --{name}"
        if name in seen and kind != STRINGS:
            return f"duplicate flag specified: --{name}"
        seen.add(name)
        if kind == BOOL:
            if value == "":
                return f"missing a value on flag: --{name}"
            if value is not None and value.lower() not in ("true", "false"):
                return f"expecting boolean value for flag --{name}, not: {value}"
        elif value is None:
            return f"missing a value on flag: --{name}"
    return None

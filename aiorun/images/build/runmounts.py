"""RUN's own flags: ``--mount`` and ``--network`` (parse-time checks here; what the builder
does with them below)."""

from __future__ import annotations

from aiorun.images.build.flags import Flags


def check_run_flags(flags: Flags) -> str | None:
    """The problem with a RUN's flags, or None. What aiorun does not implement is refused
    with its name."""
    for name, _ in flags:
        return f"RUN --{name} is not supported by aiorun"
    return None

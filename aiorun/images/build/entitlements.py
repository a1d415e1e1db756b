"""BuildKit's build entitlements (``docker buildx build --allow``): what a Dockerfile may
ask for only when the build grants it.

``aiorun build --allow network.host`` (query parameter ``allow``, repeated or
comma-separated) grants ``network.host``: ``RUN --network=host`` runs that step in the host's
network namespace. Without it such a step is refused before any step runs (:func:`check`,
naming the line) and again when it would run (:func:`require`: a base image's ONBUILD
trigger is parsed only then). ``security.insecure`` (``RUN --security=insecure``) is refused
by name: aiorun does not implement it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from aiorun.errors import InvalidArgument

if TYPE_CHECKING:  # pragma: no cover
    from aiorun.images.build.dockerfile.parser import Instruction

NETWORK_HOST = "network.host"


def parse_allow(values: Iterable[str]) -> frozenset[str]:
    """The entitlements the ``allow`` values grant; ValueError naming an unknown one."""
    out = set()
    for raw in values:
        for item in filter(None, (x.strip() for x in raw.split(","))):
            if item == "security.insecure":
                raise ValueError("entitlement security.insecure is not supported by aiorun "
                                 "build")
            if item != NETWORK_HOST:
                raise ValueError(f"invalid entitlement {item!r} (aiorun build grants "
                                 f"{NETWORK_HOST})")
            out.add(item)
    return frozenset(out)


def _problem(ins: "Instruction", allow: frozenset[str]) -> str | None:
    if ins.cmd == "RUN" and ins.flags.get("network") == "host" and NETWORK_HOST not in allow:
        return (f"RUN --network=host needs the {NETWORK_HOST} entitlement, which this build "
                f"does not grant (aiorun build --allow {NETWORK_HOST})")
    return None


def check(instructions: list["Instruction"], allow: frozenset[str],
          dockerfile: str = "Dockerfile") -> None:
    """Refuse, naming the file and line, the first instruction that needs an entitlement
    ``allow`` does not grant (before any step runs)."""
    from aiorun.images.build.dockerfile.parser import DockerfileError
    for ins in instructions:
        problem = _problem(ins, allow)
        if problem:
            raise DockerfileError(problem, ins.line, dockerfile)


def require(ins: "Instruction", allow: frozenset[str]) -> None:
    """InvalidArgument when ``ins`` needs an entitlement ``allow`` does not grant."""
    problem = _problem(ins, allow)
    if problem:
        raise InvalidArgument(problem)

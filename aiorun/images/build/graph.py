"""A multi-stage Dockerfile as a dependency graph of stages (pure, no I/O).

:func:`split_stages` cuts the instructions after the global ``ARG``s into :class:`StageDef`s
(one per ``FROM``) and finds what each stage needs: an earlier stage named by its ``FROM``,
``COPY --from=`` or ``RUN --mount=...,from=``. :func:`needed` is what a target stage needs
(itself and, transitively, its dependencies), in Dockerfile order; the builder skips every
other stage and builds independent ones concurrently. A name refers only to an *earlier*
stage (as in Docker): a later or unknown name is an image, so there are no cycles.
Problems (a duplicate stage name, a missing target, a ``FROM --platform`` aiorun cannot
build for) are :class:`DockerfileError`s raised before any stage starts. :func:`global_args`
evaluates the ``ARG``s before the first ``FROM`` (with the predefined platform ARGs).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiorun.images.build.dockerfile import DockerfileError, Instruction, arg_pairs
from aiorun.images.build.expand import expand_word
from aiorun.images.build.flags import flag, flag_values
from aiorun.images.build.platforms import check_from_platform, platform_args


@dataclass
class StageDef:
    """One stage: its ``FROM`` and the instructions after it."""

    index: int
    name: str                                   # the ``AS`` name, lower-cased ("" if none)
    instructions: list[Instruction]             # the FROM first
    base: str                                   # the FROM image/stage, ARGs expanded
    deps: set[int] = field(default_factory=set)

    @property
    def label(self) -> str:
        """How output lines name the stage: its name, else ``stage-<index>``."""
        return self.name or f"stage-{self.index}"


def stage_index(stages: list[StageDef], ref: str, before: int) -> int | None:
    """The index of the stage ``ref`` names (its name or its number) among the stages
    before index ``before``; None when it names none (it is an image)."""
    ref = ref.lower()
    for sd in stages[:before]:
        if (sd.name and sd.name == ref) or str(sd.index) == ref:
            return sd.index
    return None


def _mount_from(spec: str) -> str | None:
    for part in spec.split(","):
        k, eq, v = part.partition("=")
        if eq and k.strip().lower() == "from":
            return v.strip()
    return None


def global_args(instructions: list[Instruction], buildargs: dict[str, str],
                used: set[str]) -> dict[str, str]:
    """The values of the ``ARG``s before the first ``FROM`` (``instructions``): the
    predefined platform ARGs, then each declared ARG's ``--build-arg`` value or its default
    (an ARG without either stays unset). Declared names are added to ``used``."""
    meta_args = platform_args()                         # TARGETARCH & co.
    for ins in instructions:
        for name, default in arg_pairs(ins):
            used.add(name)
            if name in buildargs:
                meta_args[name] = buildargs[name]
            elif default is not None:
                meta_args[name] = expand_word(default, meta_args, ins.escape)
    return meta_args


def check_platforms(instructions: list[Instruction], meta_args: dict[str, str]) -> None:
    """Refuse a ``FROM --platform`` naming another platform than this machine's (before any
    stage starts)."""
    for ins in instructions:
        if ins.cmd == "FROM" and "platform" in ins.flags:
            problem = check_from_platform(
                expand_word(ins.flags.get("platform", ""), meta_args, ins.escape))
            if problem:
                raise DockerfileError(problem, ins.line)


def split_stages(instructions: list[Instruction], meta_args: dict[str, str]
                 ) -> list[StageDef]:
    """The stages of ``instructions`` (which begin with a ``FROM``); ``meta_args`` are the
    global ARGs' values, used to expand ``FROM`` and ``--from`` (a ``--from`` that only a
    stage ARG resolves is found when its step runs)."""
    stages: list[StageDef] = []
    for ins in instructions:
        if ins.cmd == "FROM":
            words = [expand_word(ins.args[0], meta_args, ins.escape)] + ins.args[1:]
            name = words[2].lower() if len(words) == 3 else ""
            if name and any(sd.name == name for sd in stages):
                raise DockerfileError(f"duplicate stage name {words[2]!r}", ins.line)
            sd = StageDef(len(stages), name, [ins], words[0])
            dep = stage_index(stages, sd.base, sd.index)
            if dep is not None:
                sd.deps.add(dep)
            stages.append(sd)
            continue
        sd = stages[-1]
        sd.instructions.append(ins)
        refs: list[str] = []
        if ins.cmd in ("COPY", "ADD"):
            f = flag(ins, "from")
            if f is not None:
                refs.append(expand_word(f, meta_args, ins.escape))
        elif ins.cmd == "RUN":
            # (BuildKit refuses a variable in a mount's from=: taken as written)
            refs += [r for r in (_mount_from(m) for m in flag_values(ins, "mount")) if r]
        for ref in refs:
            dep = stage_index(stages, ref, sd.index)
            if dep is not None:
                sd.deps.add(dep)
    return stages


def target_index(stages: list[StageDef], target: str | None) -> int:
    """The stage ``--target`` names (the last stage without one)."""
    if not target:
        return len(stages) - 1
    t = target.lower()
    for sd in stages:
        if sd.name == t:
            return sd.index
    raise DockerfileError(f"target stage {target!r} could not be found")


def needed(stages: list[StageDef], target: int) -> list[int]:
    """The stages building ``target`` needs: itself and its dependencies, transitively, in
    Dockerfile order."""
    seen: set[int] = set()
    todo = [target]
    while todo:
        i = todo.pop()
        if i not in seen:
            seen.add(i)
            todo += stages[i].deps
    return sorted(seen)

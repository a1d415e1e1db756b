"""The builder against a fake BuildHost: it needs nothing from the engine but the interface."""

from __future__ import annotations

from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator

import anyio
import pytest

from aiorun.errors import NotFound
from aiorun.images.build.builder import Builder
from aiorun.images.build.dockerfile import parse
from aiorun.images.build.graph import StageDef
from aiorun.images.build.host import BuildError, CommandDidNotRun, RunStep
from aiorun.images.build.snapshot import Snapshot
from aiorun.images.build.stage import Stage
from aiorun.images.build.workdirs import ACTIVE, SNAPSHOTS, sweep_stale


@dataclass
class FakeImage:
    id: str
    repo_tags: list[str]


class FakeImages:
    def __init__(self) -> None:
        self.created: list[tuple[dict[str, Any], list[str]]] = []

    async def create_image(self, config: dict[str, Any], tags: list[str]) -> FakeImage:
        self.created.append((config, list(tags)))
        return FakeImage("sha256:" + "ab" * 32, list(tags))

    def release_layer(self, diff_id: str) -> None:
        pass

    async def gc_layers(self, diff_ids: list[str]) -> None:
        pass


@dataclass
class FakeStorage:
    calls: list[tuple[str, str]] = field(default_factory=list)

    def create_container(self, sid: str, layers: list[str], init: dict[str, bytes]) -> None:
        self.calls.append(("create", sid))

    def mount(self, sid: str) -> str:
        self.calls.append(("mount", sid))
        return "/nonexistent-fake-rootfs"     # the fake RUN never touches it

    def unmount(self, sid: str) -> None:
        self.calls.append(("unmount", sid))

    def remove_container(self, sid: str) -> None:
        self.calls.append(("remove", sid))


class FakeProcess:
    def __init__(self, output: list[tuple[int, bytes]], code: int) -> None:
        self._output, self._code = output, code

    async def output(self) -> AsyncIterator[tuple[int, bytes]]:
        for chunk in self._output:
            yield chunk

    async def wait(self) -> int:
        return self._code


class FakeHost:
    def __init__(self, root: Path, *, output: list[tuple[int, bytes]] = (), code: int = 0,
                 fail: Exception | None = None) -> None:
        self.work_root = root / "tmp"
        self.cache_root = root / "buildcache"
        self.images = FakeImages()
        self.storage = FakeStorage()
        self.events: list[tuple[str, str, dict[str, Any]]] = []
        self.discarded: list[str] = []
        self.steps: list[RunStep] = []
        self.task_group: Any = None          # the "daemon's" task group (spawn)
        self._output, self._code, self._fail = list(output), code, fail

    @asynccontextmanager
    async def run_command(self, step: RunStep) -> AsyncIterator[FakeProcess]:
        self.steps.append(step)
        if self._fail is not None:
            raise self._fail
        yield FakeProcess(self._output, self._code)

    async def discard_process(self, id: str) -> None:
        self.discarded.append(id)

    def spawn(self, fn: Any) -> None:
        assert self.task_group is not None, "the test must set host.task_group"
        self.task_group.start_soon(fn)

    def emit_image_event(self, action: str, image_id: str, attrs: dict[str, Any]) -> None:
        self.events.append((action, image_id, attrs))

    async def pull_image(self, ref: str) -> Any:
        raise NotFound(f"manifest for {ref} not found (no registry in this test)")


def _builder(host: FakeHost, tmp_path: Path, dockerfile: str, **kw: Any) -> Builder:
    ctx = tmp_path / "ctx"
    ctx.mkdir(exist_ok=True)
    return Builder(host, ctx, parse(dockerfile), **kw)  # type: ignore[arg-type]


def test_stage_envs_follow_dockers_precedence():
    st = Stage()
    st.args = {"A": "arg", "B": "arg"}
    st.config["Env"] = ["B=env", "C=env"]
    assert st.substitution_env() == {"A": "arg", "B": "env", "C": "env"}
    assert st.run_env() == ["B=env", "C=env", "A=arg"]


@pytest.mark.anyio
async def test_a_metadata_only_build_makes_an_image_and_emits_events(tmp_path):
    host = FakeHost(tmp_path)
    b = _builder(host, tmp_path, "FROM scratch\nENV X=1\nCMD [\"x\"]\n", tags=["t:1"])
    async with anyio.create_task_group() as tg:
        host.task_group = tg
        msgs = [m async for m in b.run()]
    assert b.image_id == "sha256:" + "ab" * 32
    (cfg, tags), = host.images.created
    assert tags == ["t:1"] and cfg["config"]["Env"] == ["X=1"] and cfg["config"]["Cmd"] == ["x"]
    assert [h.get("empty_layer") for h in cfg["history"]] == [True, True]
    assert [e[0] for e in host.events] == ["build", "tag"]
    assert {"stream": "Successfully tagged t:1\n"} in msgs
    assert not (host.work_root / b.work.name).exists()   # the work dir is gone


@pytest.mark.anyio
@pytest.mark.parametrize("fail, code, message", [
    (CommandDidNotRun("exec: nope: not found", 127), 0,
     "The command '/bin/sh -c nope' could not run: exec: nope: not found (exit code 127)"),
    (None, 3, "The command '/bin/sh -c nope' returned a non-zero code: 3"),
    (BuildError("RUN needs the runtime, which is not running"), 0,
     "RUN needs the runtime, which is not running"),
])
async def test_run_step_failures_become_build_errors(tmp_path, fail, code, message):
    host = FakeHost(tmp_path, output=[(1, b"hello\n"), (2, b"oops\n")], code=code, fail=fail)
    b = _builder(host, tmp_path, "FROM scratch\nRUN nope\n")
    b.work.mkdir(parents=True)
    msgs = []
    with pytest.raises(BuildError) as exc:
        snap = Snapshot(host, b.work, [], {})    # type: ignore[arg-type]
        snap.id, snap.rootfs = "c" * 64, tmp_path   # not entered: the fake RUN never uses it
        sd = StageDef(0, "", b.instructions[:1], "scratch")
        async for m in b._run_cmd(Stage(), sd, b.instructions[1], snap,
                                  ["/bin/sh", "-c", "nope"]):
            msgs.append(m)
    assert exc.value.message == message
    step, = host.steps
    assert step.argv == ["/bin/sh", "-c", "nope"] and step.cwd == "/"
    assert step.state_dir == b.work / ("c" * 12)
    # stderr is marked as Docker's classic builder marks it (red)
    assert msgs == ([] if fail else [{"stream": "hello\n"},
                                     {"stream": "\x1b[91moops\n\x1b[0m"}])


@pytest.mark.anyio
async def test_sweep_stale_removes_what_a_crashed_build_left(tmp_path):
    host = FakeHost(tmp_path)
    stale = host.work_root / "build-dead"
    stale.mkdir(parents=True)
    (stale / SNAPSHOTS).write_text("s1\ns2\n")
    running = host.work_root / "build-live"
    running.mkdir()
    (running / SNAPSHOTS).write_text("s3\n")
    other = host.work_root / "unrelated"
    other.mkdir()
    ACTIVE.add(running.name)
    try:
        assert await sweep_stale(host) == ["build-dead"]   # type: ignore[arg-type]
    finally:
        ACTIVE.discard(running.name)
    assert host.discarded == ["s1", "s2"]
    assert host.storage.calls == [("unmount", "s1"), ("remove", "s1"),
                                  ("unmount", "s2"), ("remove", "s2")]
    assert not stale.exists() and running.exists() and other.exists()


def test_the_images_layer_imports_nothing_above_it():
    """The builder and the store reach the engine only through interfaces (BuildHost)."""
    import subprocess
    import sys
    code = ("import sys, aiorun.images.build.builder, aiorun.images.store, aiorun.images.archive\n"
            "print(sorted(m for m in sys.modules if m.startswith(('aiorun.engine', 'aiorun.api',"
            " 'aiorun.cli', 'aiorun.runtime'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.anyio
async def test_stages_the_target_does_not_need_are_skipped_and_output_is_prefixed(tmp_path):
    host = FakeHost(tmp_path)
    b = _builder(host, tmp_path, "FROM scratch AS a\nENV A=1\nFROM scratch AS unused\n"
                                 "ENV U=1\nFROM scratch AS b\nENV B=1\nFROM a\nENV C=1\n")
    async with anyio.create_task_group() as tg:
        host.task_group = tg
        msgs = [m["stream"] for m in [m async for m in b.run()] if "stream" in m]
    (cfg, _), = host.images.created
    assert cfg["config"]["Env"] == ["A=1", "C=1"]
    assert "[a 2/2] ENV A=1\n" in msgs and "[stage-3 2/2] ENV C=1\n" in msgs
    assert not any("unused" in m or "[b " in m for m in msgs)
    # a stage's failure ends the build with that error, the other stages cancelled
    host = FakeHost(tmp_path, fail=BuildError("RUN needs the runtime, which is not running"))
    b = _builder(host, tmp_path, "FROM scratch AS a\nRUN x\nFROM scratch\n"
                                 "COPY --from=a /x /x\n")
    async with anyio.create_task_group() as tg:
        host.task_group = tg
        with pytest.raises(BuildError, match="RUN needs the runtime"):
            async for _ in b.run():
                pass
    assert not host.images.created and not b.work.exists()
    kinds = [c[0] for c in host.storage.calls]      # the snapshot was removed
    assert kinds == ["create", "mount", "unmount", "remove"]

"""Issue 13: image builds, aiorun side by side with podman (buildah inside) and, where the
bench runs dockerd, docker's classic builder and BuildKit.

Each build is one whole CLI process (``aiorun build``, ``podman build``, ``docker build``),
median of ``runs``; RUN steps have no network (``--network none`` for podman; aiorun's
default; docker's default bridge is in the bench's own netns). Workloads, all FROM the
engine's busybox image:

* ``walkthrough cold`` / ``cached`` — ``examples/helloworld`` (the walkthrough's seven
  instructions: WORKDIR, ADD ., RUN, EXPOSE, ENV, CMD): ``--no-cache``, then the same build
  again with everything cached;
* ``3-stage cold`` — two independent stages (each ``sleep 1`` + 8 MB of ``dd``) and a final
  stage copying from both, ``--no-cache``; ``stage A`` / ``stage B`` are each stage alone
  (``--target``). An engine that builds independent stages concurrently has ``3-stage cold``
  well under ``stage A + stage B`` (the ``sum`` column);
* ``500-file context`` — ``COPY . /ctx/`` of 500 files of 4 KiB, ``--no-cache`` (the
  context tar, its upload and the copy).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from bench.base import Engine, Workspace, run
from bench.stats import summarize_ns

REPO = Path(__file__).resolve().parent.parent
STAGE = "RUN sleep 1 && dd if=/dev/zero of=/out bs=1048576 count=8 2>/dev/null\n"
THREE_STAGE = ("ARG BASE\n"
               "FROM ${BASE} AS a\n" + STAGE +
               "FROM ${BASE} AS b\n" + STAGE +
               "FROM ${BASE}\nCOPY --from=a /out /a\nCOPY --from=b /out /b\n")
OPS = ("walkthrough cold", "walkthrough cached", "3-stage cold", "stage A", "stage B",
       "500-file context")


class Builder:
    """One engine's ``build`` CLI."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], base: str,
                 extra: tuple[str, ...] = ()) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.base = base                    # the engine's busybox image
        self.extra = list(extra)

    def build(self, ctx: Path, *args: str) -> None:
        run(self.argv + ["build", "-q", *self.extra, "--build-arg", f"BASE={self.base}",
                         *args, str(ctx)], env=self.env, timeout=600)

    def forget(self, tag: str) -> None:
        run(self.argv + ["rmi", "-f", tag], env=self.env, check=False)


def builder_for(engine: Engine) -> Builder | None:
    from bench.aiorun_engine import IMAGE, Aiorun, aiorun_exe
    from bench.peers import Docker, Podman
    if isinstance(engine, Aiorun):
        return Builder(engine.name, aiorun_exe(), engine.env, IMAGE)
    if isinstance(engine, Podman):
        return Builder(engine.name, engine.base, engine.env, "bench-busybox",
                       ("--network", "none", "--layers"))
    if isinstance(engine, Docker):      # the classic builder (BuildKit: see docker_buildkit)
        return Builder(engine.name, engine.cli, dict(engine.env, DOCKER_BUILDKIT="0"),
                       "bench-busybox")
    return None


def contexts(root: Path) -> dict[str, Path]:
    """The build contexts, made once per bench run."""
    out = {"walkthrough": root / "walkthrough", "three": root / "three",
           "files": root / "files"}
    if not out["walkthrough"].exists():
        shutil.copytree(REPO / "examples" / "helloworld", out["walkthrough"])
        out["three"].mkdir(parents=True)
        (out["three"] / "Dockerfile").write_text(THREE_STAGE)
        out["files"].mkdir(parents=True)
        (out["files"] / "Dockerfile").write_text("ARG BASE\nFROM ${BASE}\nCOPY . /ctx/\n")
        for i in range(500):
            d = out["files"] / f"d{i // 50:02d}"
            d.mkdir(exist_ok=True)
            (d / f"f{i:03d}").write_bytes(bytes([i % 256]) * 4096)
    return out


def measure_builder(b: Builder, ctxs: dict[str, Path], runs: int) -> dict:
    samples: dict[str, list[int]] = {op: [] for op in OPS}
    errors: list[str] = []

    def timed(op: str, ctx: Path, *args: str) -> None:
        t0 = time.perf_counter_ns()
        try:
            b.build(ctx, *args)
        except Exception as exc:
            errors.append(f"{op}: {exc}"[:300])
            return
        samples[op].append(time.perf_counter_ns() - t0)

    for _ in range(runs):
        timed("walkthrough cold", ctxs["walkthrough"], "--no-cache", "-t", "bench-walk")
        timed("walkthrough cached", ctxs["walkthrough"], "-t", "bench-walk")
        timed("3-stage cold", ctxs["three"], "--no-cache", "-t", "bench-three")
        timed("stage A", ctxs["three"], "--no-cache", "--target", "a", "-t", "bench-a")
        timed("stage B", ctxs["three"], "--no-cache", "--target", "b", "-t", "bench-b")
        timed("500-file context", ctxs["files"], "--no-cache", "-t", "bench-files")
        if len(errors) >= 3:
            break
    for tag in ("bench-walk", "bench-three", "bench-a", "bench-b", "bench-files"):
        b.forget(tag)
    out: dict = {"ops": [{"op": op, "stats": summarize_ns(samples[op])} for op in OPS],
                 "errors": sorted(set(errors))[:3]}
    a, bb = (summarize_ns(samples[k]).get("median") for k in ("stage A", "stage B"))
    if a and bb:
        out["stages_sum_ms"] = round(a + bb, 1)
    return out


def measure(engine: Engine, ws: Workspace, quick: bool, runs: int) -> dict | None:
    """This engine's rows, or None when it has no build command (crun, runc)."""
    b = builder_for(engine)
    if b is None:
        return None
    return measure_builder(b, contexts(ws.dir("build")), runs)

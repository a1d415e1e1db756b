"""Issue 12: registry pull and push, aiorun side by side with skopeo (always here) and
docker / podman when the bench has them running.

Debian's ``docker-registry`` runs on the bench's loopback (inside its network namespace),
its storage in the scratch dir. Two images are made once per bench run as OCI layouts
(``bench/regimages.py``: random, incompressible layers, gzip) and copied into that registry
with skopeo (untimed):

* ``many``: 20 layers of a few MB each (per-layer costs: requests, verification, extraction);
* ``big``: one layer of 128 MB (``--quick``) or 200 MB (throughput).

For each client and image, each timed as a whole CLI process (median of ``runs``):

* ``pull cold``  — nothing of the image present (removed untimed before each run);
* ``pull warm``  — everything present: only the manifest is fetched ("Image is up to date");
* ``push first`` — to a second, empty registry (a fresh one per run, started untimed);
* ``push again`` — the same push once more: every blob is already there.

skopeo's "store" is an OCI layout (``oci:DIR``): a warm copy finds every blob in it and skips
it; it pushes the compressed blobs it holds as they are, where aiorun and docker keep layers
uncompressed and gzip them again for a first push (part of what the figure measures).
MB/s = the image's compressed layer bytes / median time (cold pull and first push only).

Registries are started and stopped by PID within one engine's turn; the source registry's
data stays in the scratch dir between turns, the push targets and pulled copies are removed
as soon as they are measured (disk: a few hundred MB at most at once).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from bench.base import Engine, Workspace, run, which
from bench.regimages import Layout, write_layout
from bench.stats import summarize_ns

#: Why docker has no rows (printed under the table; its client stays wired in
#: :func:`client_for` for a machine where dockerd may run).
DOCKER_SKIPPED = ("not measured: dockerd is not started on this shared host (the project's "
                  "rule: dockerd only in a network namespace a test made, and it loads "
                  "host-wide kernel modules such as br_netfilter); `docker pull/push` "
                  "against aiorun serve is covered by tests/integration/"
                  "test_registry_docker_peers.py")

MANY_LAYERS = 20
MANY_LAYER_MB = 4.0
BIG_MB = {True: 128.0, False: 200.0}      # by --quick
OPS = ("pull cold", "pull warm", "push first", "push again")


class Client:
    """One way to pull and push (aiorun's CLI, skopeo, docker's CLI, podman)."""
    name = "client"

    def pull(self, ref: str) -> None:
        raise NotImplementedError

    def forget(self, ref: str) -> None:
        """Remove the pulled image and its layers (untimed)."""
        raise NotImplementedError

    def push(self, ref: str, dest: str) -> None:
        """Push the pulled ``ref`` to ``dest`` (another registry's reference)."""
        raise NotImplementedError

    def forget_push(self, dest: str) -> None:
        """Undo what ``push`` left locally (a tag), untimed."""


class CliClient(Client):
    """An engine's docker-compatible CLI: ``pull``, ``tag`` + ``push``, ``rmi``."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str],
                 tls_flags: tuple[str, ...] = ()) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.tls = list(tls_flags)         # podman: --tls-verify=false (docker: loopback ok)

    def _cli(self, *args: str) -> None:
        run(self.argv + list(args), env=self.env, timeout=900)

    def pull(self, ref: str) -> None:
        self._cli("pull", *self.tls, "-q", ref)

    def forget(self, ref: str) -> None:
        self._cli("rmi", ref)

    def push(self, ref: str, dest: str) -> None:
        self._cli("tag", ref, dest)
        self._cli("push", *self.tls, "-q", dest)

    def forget_push(self, dest: str) -> None:
        run(self.argv + ["rmi", dest], env=self.env, check=False)


class Skopeo(Client):
    """``skopeo copy`` between the registry and an OCI layout in the scratch dir."""
    name = "skopeo"

    def __init__(self, store: Path) -> None:
        self.store = store
        self.exe = which("skopeo") or "skopeo"

    def _dir(self, ref: str) -> Path:
        return self.store / ref.rpartition("/")[2].replace(":", "-")

    def _copy(self, src: str, dst: str) -> None:
        run([self.exe, "copy", "--quiet", "--src-tls-verify=false", "--dest-tls-verify=false",
             src, dst], timeout=900)

    def pull(self, ref: str) -> None:
        self.store.mkdir(parents=True, exist_ok=True)
        self._copy(f"docker://{ref}", f"oci:{self._dir(ref)}:latest")

    def forget(self, ref: str) -> None:
        shutil.rmtree(self._dir(ref), ignore_errors=True)

    def push(self, ref: str, dest: str) -> None:
        self._copy(f"oci:{self._dir(ref)}:latest", f"docker://{dest}")


def client_for(engine: Engine) -> Client | None:
    """The pull/push client of an engine the bench runs, or None (crun/runc pull nothing)."""
    from bench.aiorun_engine import Aiorun, aiorun_exe
    from bench.peers import Docker, Podman
    if isinstance(engine, Aiorun):
        return CliClient(engine.name, aiorun_exe(), engine.env)
    if isinstance(engine, Docker):
        return CliClient(engine.name, engine.cli, engine.env)
    if isinstance(engine, Podman):
        return CliClient(engine.name, engine.base, engine.env, ("--tls-verify=false",))
    return None


def scale_sizes(quick: bool, scale: float) -> dict[str, list[int]]:
    """Layer sizes in bytes per image; ``scale`` shrinks them (the CI smoke test: 0.001)."""
    mb = 2**20
    return {"many": [max(1024, int(MANY_LAYER_MB * mb * scale))] * MANY_LAYERS,
            "big": [max(1024, int(BIG_MB[quick] * mb * scale))]}


class Source:
    """The images as OCI layouts plus the source registry's data dir (both kept for the
    whole bench run); ``start`` serves them on loopback for one engine's turn."""

    def __init__(self, ws: Workspace, quick: bool, scale: float) -> None:
        self.dir = ws.dir("registry")
        self.data = self.dir / "source-data"
        self.layouts: dict[str, Layout] = {}
        self.sizes = scale_sizes(quick, scale)
        self.loaded = False

    def layout(self, image: str) -> Layout:
        if image not in self.layouts:
            self.layouts[image] = write_layout(self.dir / f"src-{image}", self.sizes[image])
        return self.layouts[image]

    def start(self):
        from aiorun.testing.registry import start_registry
        reg = start_registry(self.dir, extra_config={
            "storage": {"filesystem": {"rootdirectory": str(self.data)},
                        "delete": {"enabled": True}}})
        if not self.loaded:
            try:
                for image in self.sizes:
                    run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false",
                         f"oci:{self.layout(image).path}:latest",
                         f"docker://{reg.host}/bench/{image}:latest"], timeout=900)
            except BaseException:
                reg.stop()
                raise
            # the layouts are in the registry now: keep only their sizes (disk)
            for lay in self.layouts.values():
                shutil.rmtree(lay.path, ignore_errors=True)
            self.loaded = True
        return reg


_SOURCES: dict[int, Source] = {}


def source_for(ws: Workspace, quick: bool, scale: float) -> Source:
    return _SOURCES.setdefault(id(ws), Source(ws, quick, scale))


def _timed(fn, *args) -> int:
    t0 = time.perf_counter_ns()
    fn(*args)
    return time.perf_counter_ns() - t0


def measure_client(client: Client, src: Source, runs: int) -> dict:
    """Every op on both images; {"images": {...}, "ops": [rows], "errors": [...]}."""
    from aiorun.testing.registry import start_registry
    out: dict = {"images": {}, "ops": [], "errors": []}
    reg = src.start()
    try:
        for image in src.sizes:
            lay = src.layouts[image]
            out["images"][image] = {"layers": lay.layers, "mb": round(lay.mb, 1)}
            ref = f"{reg.host}/bench/{image}:latest"
            samples: dict[str, list[int]] = {op: [] for op in OPS}
            errors: list[str] = []

            def attempt(op: str, fn, *args) -> bool:
                try:
                    samples[op].append(_timed(fn, *args))
                    return True
                except Exception as exc:
                    errors.append(f"{op}: {exc}")
                    return False

            for _ in range(runs):
                if not attempt("pull cold", client.pull, ref):
                    break
                attempt("pull warm", client.pull, ref)
                if len(samples["pull cold"]) < runs:
                    client.forget(ref)
            pushed = 0
            while samples["pull cold"] and pushed < runs:
                pushed += 1
                dst = start_registry(src.dir)    # empty: a first push uploads every blob
                dest = f"{dst.host}/bench/{image}:latest"
                try:
                    if attempt("push first", client.push, ref, dest):
                        attempt("push again", client.push, ref, dest)
                finally:
                    client.forget_push(dest)
                    dst.stop()
                    shutil.rmtree(dst.root, ignore_errors=True)
                if len(errors) >= 3:
                    break
            if samples["pull cold"]:
                try:
                    client.forget(ref)           # the big image must not stay (disk)
                except Exception as exc:
                    errors.append(f"remove: {exc}")
            for op in OPS:
                st = summarize_ns(samples[op])
                row = {"image": image, "op": op, "stats": st}
                if op in ("pull cold", "push first") and st.get("median"):
                    row["mb_per_s"] = round(lay.mb / (st["median"] / 1000), 1)
                out["ops"].append(row)
            out["errors"] += sorted(set(errors))[:3]
    finally:
        reg.stop()
    return out


def measure(engine: Engine | None, ws: Workspace, quick: bool, runs: int,
            scale: float = 1.0) -> dict | None:
    """The rows of one engine (None: it pulls nothing), or skopeo's with ``engine=None``."""
    if engine is None:
        if not which("skopeo"):
            return {"missing": "skopeo not installed (apt-get install skopeo)"}
        client: Client | None = Skopeo(ws.dir("registry") / "skopeo-store")
    else:
        client = client_for(engine)
    if client is None:
        return None
    if not which("docker-registry") or not which("skopeo"):
        return {"missing": "needs docker-registry and skopeo (apt-get install docker-registry "
                           "skopeo)"}
    return measure_client(client, source_for(ws, quick, scale), runs)

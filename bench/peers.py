"""The engines aiorun is compared with: crun, runc, podman, docker (Debian packages).

Nothing is installed here: each peer checks for its binaries and says what is missing.
All of them run inside the bench's private mount + network namespace (see ``isolate``),
keep their state under the bench's scratch directory, and put their cgroups under
``/aiorun-bench`` (removed at the end), so nothing outlives the run.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from bench.apiclient import ApiDriven
from bench.base import Engine, Unavailable, Variant, Workspace, env_with, parallel_map, run, which

CGROUP_PARENT = "/aiorun-bench"

# Debian package per binary, for the "missing" report
PACKAGES = {"crun": "crun", "runc": "runc", "podman": "podman", "dockerd": "docker.io",
            "containerd": "containerd", "conmon": "conmon"}


# --------------------------------------------------------------------------------------
# OCI bundles for runc / crun
# --------------------------------------------------------------------------------------
def oci_config(rootfs: Path, args: list[str], *, netns: bool, cgroups_path: str) -> dict:
    """The ``runc spec`` default config, non-interactive, with our args and cgroup path.

    ``netns=False`` shares the host's (= the bench namespace's) network; ``True`` gives the
    container an empty network namespace (loopback only): the ``--network none`` analogue.
    """
    from aiorun.oci.spec import default_spec      # the same defaults as ``runc spec``
    cfg = default_spec()
    proc = cfg["process"]
    proc.update(terminal=False, args=args,
                env=["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"])
    proc["capabilities"]["ambient"] = list(proc["capabilities"]["bounding"])
    cfg["root"]["path"] = str(rootfs)
    cfg["hostname"] = "bench"
    cfg["mounts"] = [m for m in cfg["mounts"] if m["destination"] != "/sys/fs/cgroup"]
    cfg["linux"]["cgroupsPath"] = cgroups_path
    cfg["linux"]["namespaces"] = [{"type": t} for t in ("pid", "ipc", "uts", "mount")] + \
        ([{"type": "network"}] if netns else [])
    return cfg


def write_bundle(path: Path, config: dict) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config))
    return path


class OciRuntime(Engine):
    """``crun run`` / ``runc run`` on an OCI bundle of the busybox rootfs.

    They have no networking of their own: "none" is an empty netns (like --network none),
    "host" shares the bench namespace's network.
    """

    detached_method = "cli"

    def __init__(self, ws: Workspace, binary: str) -> None:
        super().__init__(ws)
        self.name = binary
        self.binary = binary
        self.state = ws.root / f"{binary}-state"
        self.bundles = ws.root / f"{binary}-bundles"
        self._n = 0

    def prepare(self) -> None:
        path = which(self.binary)
        if not path:
            raise Unavailable(f"{self.binary} not installed (apt-get install {self.binary})")
        self.exe = path
        self.state.mkdir(parents=True, exist_ok=True)
        rootfs = self.ws.busybox_rootfs
        # one bundle per variant; the cgroup path is per container (--cgroup-parent analogue)
        # sequential runs reuse one cgroup path per variant: `run` removes it on exit
        cg = f"{CGROUP_PARENT}/{self.name}"
        self.true_none = write_bundle(self.bundles / "true-none", oci_config(
            rootfs, ["true"], netns=True, cgroups_path=f"{cg}-true-none"))
        self.true_host = write_bundle(self.bundles / "true-host", oci_config(
            rootfs, ["true"], netns=False, cgroups_path=f"{cg}-true-host"))
        # smoke: a failure here says why this runtime cannot run on this machine
        self._run_once(self.true_none)

    def _cmd(self, *args: str) -> list[str]:
        return [self.exe, "--root", str(self.state), *args]

    def _run_once(self, bundle: Path) -> None:
        self._n += 1
        cid = f"b{os.getpid()}-{self._n}"
        run(self._cmd("run", "--bundle", str(bundle), cid), timeout=60)

    def latency_variants(self) -> list[Variant]:
        return [Variant("run, empty netns", lambda: self._run_once(self.true_none), "none"),
                Variant("run, host network", lambda: self._run_once(self.true_host), "host")]

    def version(self) -> str:
        out = run([self.binary, "--version"], check=False).stdout.decode().splitlines()
        return out[0] if out else ""

    def start_detached(self, ids: list[str], parallel: int) -> list[str | None]:
        # the bundles were written by prepare_detached, before the clock started
        def one(cid: str) -> None:
            # the container inherits crun's stdio: a pipe would stay open until it exits,
            # so errors go to a file
            errf = self.bundles / cid / "stderr"
            with open(errf, "wb") as err:
                p = subprocess.run(self._cmd("run", "--detach", "--bundle",
                                             str(self.bundles / cid), cid),
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=err, timeout=120)
            if p.returncode:
                raise RuntimeError(errf.read_text(errors="replace").strip())
        return parallel_map(one, ids, parallel)

    def prepare_detached(self, ids: list[str]) -> None:
        rootfs = self.ws.busybox_rootfs
        for cid in ids:
            write_bundle(self.bundles / cid,
                         oci_config(rootfs, ["sleep", "100000"], netns=True,
                                    cgroups_path=f"{CGROUP_PARENT}/{self.name}-{cid}"))

    def running(self, ids: list[str]) -> int:
        out = run(self._cmd("list", "--format", "json"), check=False).stdout
        try:
            items = json.loads(out or b"[]") or []
        except ValueError:
            return 0
        want = set(ids)
        return sum(1 for c in items if c.get("id") in want and c.get("status") == "running")

    def remove_detached(self, ids: list[str], parallel: int) -> list[str | None]:
        def one(cid: str) -> None:
            run(self._cmd("delete", "--force", cid), timeout=60)
        return parallel_map(one, ids, parallel)

    def import_tar(self, tar: str, name: str) -> None:
        """The runtimes' "import": unpack the rootfs for a bundle (what umoci/skopeo would
        leave behind), timed like the engines' import."""
        import tarfile
        dest = self.ws.root / f"{self.name}-{name}-rootfs"
        dest.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tar) as tf:
            tf.extractall(dest, numeric_owner=True)
        self._images = getattr(self, "_images", {})
        self._images[name] = dest

    def run_args(self, image: str, args: list[str]) -> None:
        key = (image, tuple(args))
        self._arg_bundles = getattr(self, "_arg_bundles", {})
        if key not in self._arg_bundles:
            b = self.bundles / f"{image}-{len(self._arg_bundles)}"
            self._arg_bundles[key] = write_bundle(b, oci_config(
                self._images[image], args, netns=True,
                cgroups_path=f"{CGROUP_PARENT}/{self.name}-{image}"))
        self._run_once(self._arg_bundles[key])

    def close(self) -> None:
        # anything still registered (a failed run) is force-deleted
        try:
            items = json.loads(run(self._cmd("list", "--format", "json"), check=False).stdout
                               or b"[]") or []
        except (ValueError, FileNotFoundError):
            items = []
        for c in items:
            run(self._cmd("delete", "--force", c["id"]), check=False)


# --------------------------------------------------------------------------------------
# podman
# --------------------------------------------------------------------------------------
PODMAN_CONF = """\
# Written by aiorun's bench. Root here lacks CAP_SYS_RESOURCE (hard nofile 20000), so the
# default ulimits must fit; cgroupfs because there is no systemd; file events (no journald).
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
"""


class Podman(Engine):
    name = "podman"
    detached_method = "cli"

    def prepare(self) -> None:
        exe = which("podman")
        if not exe:
            raise Unavailable("podman not installed (apt-get install podman)")
        d = self.ws.dir("podman")
        (d / "containers.conf").write_text(PODMAN_CONF)
        self.env = env_with(CONTAINERS_CONF=str(d / "containers.conf"))
        self.base = [exe, "--root", str(d / "root"), "--runroot", str(d / "run"),
                     "--tmpdir", str(d / "tmp"), "--network-config-dir", str(d / "net"),
                     "--storage-driver", "overlay", "--cgroup-manager", "cgroupfs",
                     "--events-backend", "file"]
        run(self.base + ["import", str(self.ws.busybox_tar), "bench-busybox:latest"],
            env=self.env, timeout=120)
        self._cg = ["--cgroup-parent", f"{CGROUP_PARENT}/podman"]
        run(self.base + ["run", "--rm", "--network", "none", *self._cg, "bench-busybox", "true"],
            env=self.env)

    def _run(self, *args: str) -> None:
        run(self.base + ["run", "--rm", *self._cg, *args, "bench-busybox", "true"], env=self.env)

    def latency_variants(self) -> list[Variant]:
        return [Variant("run --rm, --network none", lambda: self._run("--network", "none"),
                        "none"),
                Variant("run --rm, bridge", lambda: self._run(), "bridge")]

    def version(self) -> str:
        return run(["podman", "--version"], check=False).stdout.decode().strip()

    def start_detached(self, ids: list[str], parallel: int) -> list[str | None]:
        def one(cid: str) -> None:
            run(self.base + ["run", "-d", "--name", cid, *self._cg, "bench-busybox",
                             "sleep", "100000"], env=self.env)
        return parallel_map(one, ids, parallel)

    def running(self, ids: list[str]) -> int:
        out = run(self.base + ["ps", "--format", "{{.Names}}"], env=self.env, check=False)
        names = set(out.stdout.decode().split())
        return len(names & set(ids))

    def remove_detached(self, ids: list[str], parallel: int) -> list[str | None]:
        def one(cid: str) -> None:
            run(self.base + ["rm", "-f", "-t", "0", cid], env=self.env)
        return parallel_map(one, ids, parallel)

    def commit_big(self, mb: int) -> dict:
        cid = "bench-big"
        run(self.base + ["run", "--name", cid, "--network", "none", *self._cg, "bench-busybox",
                         "dd", "if=/dev/zero", "of=/big", "bs=1048576", f"count={mb}"],
            env=self.env, timeout=300)
        try:
            t0 = time.perf_counter_ns()
            run(self.base + ["commit", "-q", cid, "bench-big:latest"], env=self.env, timeout=600)
            ms = (time.perf_counter_ns() - t0) / 1e6
        finally:
            run(self.base + ["rm", "-f", cid], env=self.env, check=False)
            run(self.base + ["rmi", "-f", "bench-big:latest"], env=self.env, check=False)
        return {"commit_ms": round(ms, 1), "via": "podman commit (CLI)"}

    def import_tar(self, tar: str, name: str) -> None:
        run(self.base + ["import", tar, name], env=self.env, timeout=600)

    def run_args(self, image: str, args: list[str]) -> None:
        run(self.base + ["run", "--rm", "--network", "none", *self._cg, image, *args],
            env=self.env)

    def close(self) -> None:
        if hasattr(self, "base"):
            run(self.base + ["rm", "-a", "-f", "-t", "0"], env=self.env, check=False)
            # podman leaves overlay mounts of its storage until told otherwise
            run(self.base + ["system", "reset", "-f"], env=self.env, check=False, timeout=120)


# --------------------------------------------------------------------------------------
# docker (Debian docker.io: dockerd + containerd, started by hand)
# --------------------------------------------------------------------------------------
class Docker(ApiDriven, Engine):
    """``dockerd`` started by the bench on a scratch data root; ``docker run --rm`` for
    latency; the Engine API (the same Docker-shaped calls the bench sends to aiorun) for the
    concurrent start."""
    api_image = "bench-busybox"

    name = "docker"
    detached_method = "api"

    def __init__(self, ws: Workspace) -> None:
        super().__init__(ws)
        self.proc: subprocess.Popen | None = None

    def prepare(self) -> None:
        dockerd = which("dockerd")
        if not dockerd:
            raise Unavailable("dockerd not installed (apt-get install docker.io)")
        if not which("containerd"):
            raise Unavailable("containerd not installed (apt-get install containerd)")
        cli = which("docker")
        if not cli:
            raise Unavailable("docker CLI not installed (apt-get install docker.io)")
        d = self.ws.dir("docker")
        self.sock = d / "docker.sock"
        log = open(d / "dockerd.log", "wb")
        # iptables/bridge are on: they act on the bench's own network namespace only
        self.proc = subprocess.Popen(
            [dockerd, "--data-root", str(d / "data"), "--exec-root", str(d / "exec"),
             "--pidfile", str(d / "docker.pid"), "--host", f"unix://{self.sock}",
             "--storage-driver", "overlay2", "--exec-opt", "native.cgroupdriver=cgroupfs",
             "--cgroup-parent", f"{CGROUP_PARENT}/docker", "--userland-proxy=false",
             "--log-level", "warn"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        log.close()
        self.env = env_with(DOCKER_HOST=f"unix://{self.sock}")
        self.cli = [cli]
        from bench.apiclient import make_client
        self.client = make_client(self.sock)
        deadline = time.monotonic() + 30
        while True:
            try:
                r = self.client.request("GET", "/_ping")  # body "OK" is not JSON
                r.close()
                break
            except Exception:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    tail = (d / "dockerd.log").read_text(errors="replace").splitlines()[-3:]
                    raise Unavailable(f"dockerd did not come up: {' | '.join(tail)}")
                time.sleep(0.1)
        run(self.cli + ["import", str(self.ws.busybox_tar), "bench-busybox:latest"],
            env=self.env)
        run(self.cli + ["run", "--rm", "--network", "none", "bench-busybox", "true"],
            env=self.env)

    def _run(self, *args: str) -> None:
        run(self.cli + ["run", "--rm", *args, "bench-busybox", "true"], env=self.env)

    def _api_once(self, network: str) -> dict[str, int]:
        from bench.apiclient import api_run_rm
        return api_run_rm(self.client, "bench-busybox", ["true"], network)

    def latency_variants(self) -> list[Variant]:
        return [Variant("run --rm, --network none", lambda: self._run("--network", "none"),
                        "none"),
                Variant("run --rm, bridge", lambda: self._run(), "bridge"),
                Variant("API create+start+wait+rm, none", lambda: self._api_once("none"),
                        "none", "api"),
                Variant("API create+start+wait+rm, bridge", lambda: self._api_once("bridge"),
                        "bridge", "api")]

    def version(self) -> str:
        try:
            from bench.apiclient import call
            v = call(self.client, "GET", "/version")
            return f"dockerd {v.get('Version')} (API {v.get('ApiVersion')})"
        except Exception:
            return ""

    def daemon_pids(self) -> list[int]:
        return [self.proc.pid] if self.proc and self.proc.poll() is None else []


    def import_tar(self, tar: str, name: str) -> None:
        run(self.cli + ["import", tar, name], env=self.env, timeout=600)

    def run_args(self, image: str, args: list[str]) -> None:
        run(self.cli + ["run", "--rm", "--network", "none", image, *args], env=self.env)

    def close(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                from bench.apiclient import api_remove_all
                api_remove_all(self.client)
            except Exception:
                pass
            from bench.proc import terminate
            terminate([self.proc.pid], timeout=20)
        self.proc.wait()
        self.proc = None


def discover(ws: Workspace, names: list[str]) -> list[Engine]:
    factories = {"crun": lambda: OciRuntime(ws, "crun"), "runc": lambda: OciRuntime(ws, "runc"),
                 "podman": lambda: Podman(ws), "docker": lambda: Docker(ws)}
    return [factories[n]() for n in names if n in factories]

"""A test daemon for the fault suite: its own roots, its own cgroup scope, restartable with a
fault point armed, and the checks every fault ends with.

After each fault: restart the daemon, then

* nothing lost — the witnesses (a running and an exited container made before) are listed
  in their state, the running one really runs (not frozen), every listed container has a
  sane state and ``rm -f`` works on it;
* nothing leaked — once what the faulted operation made is removed through the API, the
  daemon's inventory (:func:`aiorun.testing.faults.inventory`: mounts, links, nft table,
  cgroups, processes, storage and container dirs, spool/temp files) equals the one before;
* the event journal is gap-free and never reuses a sequence number.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiorun.api.client import ApiError, Client
from aiorun.config import Paths
from aiorun.core.faultpoint import ENV, ONCE_ENV
from aiorun.testing.daemon import DaemonProcess, start_daemon, stop_spawner
from aiorun.testing.faults import CgroupScope, cmdline, inventory, journal_gaps, leaks

PREDEFINED_NETWORKS = {"bridge", "host", "none"}
SETTLE = 20.0     # how long asynchronous teardown may take before a difference is a leak


@dataclass
class Figures:
    """What the suite did, printed at the end of the run."""
    injected: int = 0
    survived: int = 0
    leaks: int = 0
    lost: int = 0
    journal_problems: int = 0
    failed_cases: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (f"faults injected: {self.injected}, survived: {self.survived}, lost "
                f"containers: {self.lost}, leaks: {self.leaks}, journal problems: "
                f"{self.journal_problems}" + (f"; failing: {', '.join(self.failed_cases)}"
                                              if self.failed_cases else ""))


FIGURES = Figures()


def tar_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(data), 0o644, 1
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def drain(resp: Any) -> bytes:
    try:
        return bytes(resp.read())
    finally:
        resp.close()


class Lab:
    """One state root, one cgroup scope, one daemon at a time (started inside the scope)."""

    def __init__(self, busybox_tar: Path) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="aiorun-fault-"))
        run = Path(tempfile.mkdtemp(prefix="aiorun-run-", dir="/tmp"))
        self.paths = Paths(self.base / "root", run)
        self.scope = CgroupScope().create()
        self.daemon: DaemonProcess | None = None
        self.start()
        c = self.client()
        with open(busybox_tar, "rb") as f:
            drain(c.request("POST", "/images/create", {"fromSrc": "-", "repo": "busybox"},
                            body=f))
        self.witness = self.witness_exited = ""
        self.make_witnesses()

    def make_witnesses(self) -> None:
        """A running and an exited container, which every fault must leave as they are."""
        self.witness = self.run("sleep", "1000000")
        self.witness_exited = self.run("true")
        self.wait_exited(self.witness_exited)
        merged = f"/{self.witness_exited}/merged"    # its rootfs is unmounted after the exit
        deadline = time.monotonic() + SETTLE
        while any(m.endswith(merged) for m in self.inventory()["mounts"]) \
                and time.monotonic() < deadline:
            time.sleep(0.1)

    def renew_witnesses(self) -> None:
        """After a case that broke them (e.g. left frozen): replace them, so one failing
        case does not fail the next ones too. Thaws the scope first (a frozen process
        cannot even be killed)."""
        self.thaw()
        c = self.client()
        for cid in (self.witness, self.witness_exited):
            try:
                drain(c.request("DELETE", f"/containers/{cid}", {"force": True}))
            except ApiError:
                pass
        self.make_witnesses()

    def thaw(self) -> None:
        for top in self.scope.dirs:
            for dirpath, _, files in os.walk(top):
                if "freezer.state" in files:
                    try:
                        Path(dirpath, "freezer.state").write_text("THAWED")
                    except OSError:
                        pass

    # --- the daemon ---------------------------------------------------------------------
    def start(self, fault_point: str = "", once: Path | None = None) -> DaemonProcess:
        env = {ENV: fault_point, ONCE_ENV: str(once)} if fault_point else {ENV: ""}
        self.daemon = start_daemon(self.paths, extra_env=env, wrapper=self.scope.wrapper())
        return self.daemon

    def restart(self, fault_point: str = "", once: Path | None = None) -> DaemonProcess:
        if self.daemon is not None:
            self.daemon.stop()
        return self.start(fault_point, once)

    def client(self) -> Client:
        return Client(self.paths.socket)

    def spawner_pids(self) -> list[int]:
        return [pid for pid, rel in self.scope.processes().items()
                if rel == "." and "spawner" in cmdline(pid)]

    def kill_spawners(self) -> None:
        for pid in self.spawner_pids():
            os.kill(pid, 9)
        deadline = time.monotonic() + 10
        while self.spawner_pids() and time.monotonic() < deadline:
            time.sleep(0.05)

    # --- containers ---------------------------------------------------------------------
    def create(self, *cmd: str, **body: Any) -> str:
        r = self.client().post("/containers/create", {"Image": "busybox", "Cmd": list(cmd),
                                                      **body})
        return str(r["Id"])

    def run(self, *cmd: str) -> str:
        cid = self.create(*cmd)
        drain(self.client().request("POST", f"/containers/{cid}/start"))
        return cid

    def wait_exited(self, cid: str) -> None:
        drain(self.client().request("POST", f"/containers/{cid}/wait"))

    def live_ids(self) -> set[str]:
        return {c["Id"] for c in self.client().get("/containers/json", all=1)}

    def inventory(self) -> dict[str, set[str]]:
        return inventory(self.paths, self.scope, self.live_ids())

    # --- the checks after a fault ---------------------------------------------------------
    def lost(self, dead_ok: bool = False) -> list[str]:
        """Containers made before the fault that are gone or in the wrong state.

        ``dead_ok``: the fault cut a removal short, which Docker (and aiorun) shows as Dead —
        a state ``rm`` removes (:meth:`remove_extras` then proves it can)."""
        problems = []
        listed = {c["Id"]: c for c in self.client().get("/containers/json", all=1)}
        for cid, want in ((self.witness, "running"), (self.witness_exited, "exited")):
            c = listed.get(cid)
            if c is None:
                problems.append(f"{cid[:12]} ({want} before the fault) is not listed")
            elif c["State"] != want:
                problems.append(f"{cid[:12]} was {want}, now {c['State']} ({c['Status']})")
        frozen = self.freezer_state(self.witness)
        if frozen not in ("", "THAWED"):
            problems.append(f"{self.witness[:12]} runs but its cgroup is {frozen}")
        for cid, c in listed.items():
            if c["State"] not in ("created", "running", "exited") + (("dead",) if dead_ok else ()):
                problems.append(f"{cid[:12]} is in state {c['State']} ({c['Status']})")
        return problems

    def freezer_state(self, cid: str) -> str:
        for top in self.scope.dirs:
            p = Path(top) / "aiorun" / cid / "freezer.state"
            if p.exists():
                return p.read_text().strip()
        return ""

    def remove_extras(self) -> list[str]:
        """Remove through the API everything but the witnesses and busybox; what failed."""
        c = self.client()
        failed = []
        for ct in c.get("/containers/json", all=1):
            if ct["Id"] in (self.witness, self.witness_exited):
                continue
            try:
                drain(c.request("DELETE", f"/containers/{ct['Id']}", {"force": True, "v": True}))
            except ApiError as exc:
                failed.append(f"rm -f {ct['Id'][:12]} ({ct['State']}): {exc}")
        for n in c.get("/networks"):
            if n["Name"] not in PREDEFINED_NETWORKS:
                try:
                    drain(c.request("DELETE", f"/networks/{n['Id']}"))
                except ApiError as exc:
                    failed.append(f"network rm {n['Name']}: {exc}")
        for v in c.get("/volumes").get("Volumes") or []:
            try:
                drain(c.request("DELETE", f"/volumes/{v['Name']}", {"force": True}))
            except ApiError as exc:
                failed.append(f"volume rm {v['Name']}: {exc}")
        for im in c.get("/images/json"):
            if "busybox:latest" in (im.get("RepoTags") or []):
                continue
            try:
                drain(c.request("DELETE", f"/images/{im['Id']}", {"force": True}))
            except ApiError as exc:
                failed.append(f"rmi {im['Id'][:19]}: {exc}")
        return failed

    def leaks_since(self, baseline: dict[str, set[str]]) -> dict[str, list[str]]:
        """What was not in ``baseline`` and is still there after up to SETTLE seconds."""
        deadline = time.monotonic() + SETTLE
        while True:
            diff = leaks(baseline, self.inventory())
            if not diff or time.monotonic() > deadline:
                return diff
            time.sleep(0.25)

    def journal_problems(self) -> list[str]:
        return journal_gaps(self.paths)

    def log_tail(self, n: int = 40) -> str:
        """The last lines of the daemon log, without the suite's own polling requests."""
        try:
            lines = self.paths.daemon_log.read_text(errors="replace").splitlines()
            return "\n".join([ln for ln in lines if "GET /containers/json" not in ln][-n:])
        except OSError:
            return "(no log)"

    # --- the end -----------------------------------------------------------------------
    def close(self) -> list[str]:
        """Remove every container, stop daemon and spawner, remove scope and roots; what was
        left (processes or cgroups in the scope, mounts under the roots)."""
        left: list[str] = []
        try:
            if self.daemon is not None and self.daemon.alive():
                c = self.client()
                for ct in c.get("/containers/json", all=1):
                    drain(c.request("DELETE", f"/containers/{ct['Id']}", {"force": True}))
                drain(c.request("POST", "/aiorun/system/reset", check=False))
        finally:
            if self.daemon is not None:
                self.daemon.stop()
            stop_spawner(self.paths, force=True)
            self.thaw()
            deadline = time.monotonic() + 10
            while self.scope.processes() and time.monotonic() < deadline:
                time.sleep(0.1)
            for pid, rel in self.scope.processes().items():
                left.append(f"process {pid} {cmdline(pid)} in {rel}")
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
            roots = (str(self.paths.root) + "/", str(self.paths.run) + "/")
            for line in Path("/proc/self/mountinfo").read_text().splitlines():
                mp = line.split(" ")[4]
                if mp.startswith(roots):
                    left.append(f"mount {mp}")
                    subprocess.run(["umount", "-l", mp], check=False)
            left += [f"cgroup {d}" for d in self.scope.remove()]
            keep = os.environ.get("AIORUN_FAULT_KEEP_LOGS")
            if keep:                            # for diagnosis: the logs outlive the lab
                dest = Path(keep) / self.base.name
                dest.mkdir(parents=True, exist_ok=True)
                for src in (self.paths.daemon_log, self.paths.run / "spawner.log"):
                    if src.exists():
                        shutil.copy(src, dest / src.name)
            subprocess.run(["rm", "-rf", "--one-file-system", str(self.base),
                            str(self.paths.run)], check=False)
        return left


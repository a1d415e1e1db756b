"""kill -9 of the daemon, and of the spawner, at named points of each operation.

Each case arms one point (``AIORUN_FAULT_POINT``, see :mod:`aiorun.core.faultpoint`),
restarts the daemon with it, runs the operation (which dies half-way: the process is
SIGKILLed at the point), restarts the daemon clean and then checks (:mod:`faultlab`):
nothing lost, the faulted operation's leftovers removable through the API and, once
removed, nothing leaked (mounts, links, nft, cgroups, processes, storage, spool files), and
the event journal gap-free. The cases share one daemon state (module scope), so the
witnesses made at the start live through every fault.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Callable

import pytest

from aiorun.api.client import ApiError, DaemonUnreachable
from faultlab import FIGURES, Lab, drain, tar_bytes

pytestmark = [pytest.mark.integration, pytest.mark.fault]


def op_create(lab: Lab) -> None:
    lab.create("sleep", "1000")


def op_run(lab: Lab) -> None:
    lab.run("sleep", "1000")


def op_commit(lab: Lab) -> None:
    # the running witness: commit pauses it while the diff is spooled
    drain(lab.client().request("POST", "/commit", {"container": lab.witness,
                                                   "repo": "faultcommit"}))


def op_build(lab: Lab) -> None:
    ctx = tar_bytes({"Dockerfile": b"FROM busybox\nRUN echo built > /built\n"})
    drain(lab.client().request("POST", "/build", {"t": "faultbuild", "nocache": True},
                               body=iter([ctx])))


def op_import(lab: Lab) -> None:
    layer = tar_bytes({f"fault-{random.getrandbits(64):x}": b"a layer of its own\n"})
    drain(lab.client().request("POST", "/images/create", {"fromSrc": "-",
                                                          "repo": "faultimport"},
                               body=iter([layer])))


def op_rm(lab: Lab) -> None:
    cid = lab.run("sleep", "1000")
    drain(lab.client().request("DELETE", f"/containers/{cid}", {"force": True}))


def op_exec(lab: Lab) -> None:
    c = lab.client()
    eid = c.post(f"/containers/{lab.witness}/exec", {"Cmd": ["sleep", "1000"]})["Id"]
    drain(c.request("POST", f"/exec/{eid}/start", body={"Detach": True}))


def op_volume_create(lab: Lab) -> None:
    lab.client().post("/volumes/create", {"Name": "faultvol"})


def op_network_create(lab: Lab) -> None:
    subnet = f"10.{random.randint(200, 250)}.{random.randint(0, 255)}.0/24"
    lab.client().post("/networks/create", {"Name": "faultnet",
                                           "IPAM": {"Config": [{"Subnet": subnet}]}})


def op_run_on_network(lab: Lab) -> None:
    subnet = f"10.{random.randint(200, 250)}.{random.randint(0, 255)}.0/24"
    lab.client().post("/networks/create", {"Name": "faultnet2",
                                           "IPAM": {"Config": [{"Subnet": subnet}]}})
    cid = lab.create("sleep", "1000", HostConfig={"NetworkMode": "faultnet2"})
    drain(lab.client().request("POST", f"/containers/{cid}/start"))


@dataclass(frozen=True)
class Case:
    point: str                 # the fault point armed
    victim: str                # "daemon" or "spawner": who dies there
    op: Callable[[Lab], None]


CASES = [
    Case("create.storage", "daemon", op_create),
    Case("start.spawned", "daemon", op_run),
    Case("start.network", "daemon", op_run_on_network),       # network attach
    Case("commit.spooled", "daemon", op_commit),
    Case("build.step", "daemon", op_build),
    Case("import.layer", "daemon", op_import),
    Case("rm.storage", "daemon", op_rm),
    Case("rm.trash", "daemon", op_rm),                        # background delete of the trees
    Case("exec.started", "daemon", op_exec),
    Case("volume.create", "daemon", op_volume_create),
    Case("network.create", "daemon", op_network_create),
    Case("spawner.cgroups", "spawner", op_run),
    Case("spawner.create.replied", "spawner", op_run),
    Case("spawner.start.replied", "spawner", op_run),
    Case("spawner.kill", "spawner", op_rm),                   # rm -f's kill in flight
    Case("spawner.delete", "spawner", op_rm),                 # rm's runtime delete in flight
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.victim}@{c.point}")
def test_kill_at_named_point(lab: Lab, case: Case) -> None:
    baseline = lab.inventory()
    seq_before = lab.client().get("/info").get("EventsLastSeq")
    once = lab.base / f"fired-{case.point}"
    if case.victim == "spawner":
        # the spawner outlives daemons (containers run): only a new one has the point armed,
        # so the idle one is killed first (the running containers are re-adopted)
        lab.daemon.stop() if lab.daemon is not None else None
        lab.kill_spawners()
    lab.restart(case.point, once)
    spawners = lab.spawner_pids()
    try:
        case.op(lab)
    except (ApiError, DaemonUnreachable, OSError):
        pass                                    # the operation dies with its process
    # the victim may still be dying: a "*.replied" point kills it just after its reply,
    # which the operation may have returned with already, and "rm.trash" in the background
    # delete that follows the removal's answer
    deadline = time.monotonic() + 20
    if case.victim == "daemon":
        assert lab.daemon is not None
        while lab.daemon.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
    else:
        while set(spawners) & set(lab.spawner_pids()) and time.monotonic() < deadline:
            time.sleep(0.05)
    fired = once.exists()
    FIGURES.injected += int(fired)
    assert fired, f"{case.point} was never reached by {case.op.__name__}:\n{lab.log_tail()}"
    if case.victim == "spawner":
        assert not set(spawners) & set(lab.spawner_pids()), "the spawner survived its kill"

    lab.restart()                               # a clean daemon (the old one, if alive, stops)
    problems: list[str] = []
    lost = lab.lost(dead_ok=case.point.startswith("rm."))
    problems += lost
    problems += lab.remove_extras()
    leaks = lab.leaks_since(baseline)
    problems += [f"leaked {k}: {v}" for k, vs in leaks.items() for v in vs]
    journal = lab.journal_problems()
    problems += [f"journal: {j}" for j in journal]
    FIGURES.lost += len({p.split()[0] for p in lost})     # containers, not problems
    FIGURES.leaks += sum(len(v) for v in leaks.values())
    FIGURES.journal_problems += len(journal)
    if lost:
        lab.renew_witnesses()
    if problems:
        FIGURES.failed_cases.append(f"{case.victim}@{case.point}")
    else:
        FIGURES.survived += 1
    assert not problems, (f"after kill -9 of the {case.victim} at {case.point} "
                          f"(journal was at {seq_before}):\n  " + "\n  ".join(problems)
                          + "\n--- daemon log ---\n" + lab.log_tail())

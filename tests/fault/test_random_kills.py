"""Concurrent create/start/rm while the daemon (and sometimes the spawner) is killed -9 at
random moments and restarted.

Bounded (CI): 4 workers, at least 40 create/start/rm cycles, 4 kills (3 of the daemon, 1
of the spawner, in random order at random moments). ``--soak``: 8 workers, 1,000
cycles, a kill every 1–3 s until they are done. Then, as after every fault (faultlab):
nothing lost (every container whose create succeeded and which no ``rm`` was sent for is
still listed, in a sane state; the witnesses are as they were), nothing leaked once the
leftovers are removed through the API, and the event journal is gap-free.
"""

from __future__ import annotations

import os
import random
import threading
import time

import pytest

from aiorun.api.client import ApiError, DaemonUnreachable
from faultlab import FIGURES, Lab, drain

pytestmark = [pytest.mark.integration, pytest.mark.fault]


class Ledger:
    """What the workers know for sure about each container."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.created: set[str] = set()          # create answered with this id
        self.rm_sent: set[str] = set()          # a DELETE was sent (it may or may not be done)
        self.cycles = 0
        self.errors = 0
        self.stuck: list[str] = []              # calls that kept failing with the daemon up


STUCK_AFTER = 30.0     # a call failing this long while the daemon answers: it is wedged


def _retry(fn, stop: threading.Event, ledger: Ledger):
    """``fn()`` until it works: while the daemon is down the call fails; an ApiError during
    a restart too (e.g. the container's state is being re-adopted). A call that keeps
    failing with an ApiError for STUCK_AFTER seconds is recorded and stops everything."""
    first_refusal: float | None = None
    while not stop.is_set():
        try:
            return fn()
        except (DaemonUnreachable, OSError):
            pass                                # the daemon is down: that is expected
        except ApiError as exc:
            # refused by a daemon that answers; kills in between do not reset the clock
            first_refusal = first_refusal or time.monotonic()
            if time.monotonic() - first_refusal > STUCK_AFTER:
                with ledger.lock:
                    ledger.stuck.append(f"{exc.status}: {exc}")
                stop.set()
                return None
        with ledger.lock:
            ledger.errors += 1
        time.sleep(0.05)
    return None


def worker(lab: Lab, cycles: list[int], ledger: Ledger, stop: threading.Event,
           kills_done: threading.Event) -> None:
    """Cycles until ``cycles`` are used up and the killer is done (so every kill lands on
    work in flight)."""
    while not stop.is_set():
        with ledger.lock:
            if not cycles and kills_done.is_set():
                return
            if cycles:
                cycles.pop()
        cid = _retry(lambda: lab.create("sleep", "1000"), stop, ledger)
        if cid is None:
            return
        with ledger.lock:
            ledger.created.add(cid)
        _retry(lambda: drain(lab.client().request("POST", f"/containers/{cid}/start")),
               stop, ledger)

        def rm() -> None:
            with ledger.lock:
                ledger.rm_sent.add(cid)
            try:
                drain(lab.client().request("DELETE", f"/containers/{cid}", {"force": True}))
            except ApiError as exc:
                if exc.status != 404:           # 404: a previous try removed it
                    raise
        _retry(rm, stop, ledger)
        with ledger.lock:
            ledger.cycles += 1


def killer(lab: Lab, schedule: list[str] | None, stop: threading.Event, done: list[str],
           todo: list[int], kills_done: threading.Event, failed: list[str]) -> None:
    """kill -9 the daemon or the spawner at random moments, then start a clean daemon: the
    victims of ``schedule`` in turn, or (None) random victims (3 in 4 the daemon) until the
    cycles are used up."""
    try:
        while not stop.is_set() and (len(done) < len(schedule) if schedule is not None
                                     else bool(todo)):
            if stop.wait(random.uniform(0.2, 1.0) if schedule is not None
                         else random.uniform(1, 3)):
                return
            victim = (schedule[len(done)] if schedule is not None else
                      "daemon" if random.random() < 0.75 else "spawner")
            kill_once(lab, victim, done)
    except Exception as exc:                    # e.g. the daemon did not come back
        failed.append(f"killer: {exc!r}")
        stop.set()
    finally:
        kills_done.set()


def kill_once(lab: Lab, victim: str, done: list[str]) -> None:
    assert lab.daemon is not None
    if victim == "daemon" or not lab.spawner_pids():
        lab.daemon.kill9()
        done.append("daemon")
    else:
        for pid in lab.spawner_pids():
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass                            # e.g. a fork of the spawner already gone
        done.append("spawner")
        lab.daemon.stop()                       # the new daemon starts a new spawner
    lab.start()


@pytest.mark.timeout(4000)      # the --soak run; the bounded one ends in a few seconds
def test_create_start_rm_under_random_kills(lab: Lab, soak: bool) -> None:
    schedule = None if soak else random.sample(["daemon", "daemon", "daemon", "spawner"], 4)
    workers, cycles = (8, 1000) if soak else (4, 40)
    baseline = lab.inventory()
    ledger = Ledger()
    stop = threading.Event()
    todo = list(range(cycles))
    done: list[str] = []
    kills_done = threading.Event()
    failed: list[str] = []
    threads = [threading.Thread(target=worker, args=(lab, todo, ledger, stop, kills_done),
                                daemon=True) for _ in range(workers)]
    kt = threading.Thread(target=killer, args=(lab, schedule, stop, done, todo, kills_done,
                                                    failed), daemon=True)
    for t in threads:
        t.start()
    kt.start()
    deadline = time.monotonic() + (3600 if soak else 240)
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    stop.set()
    kt.join(60)
    for t in threads:
        t.join(60)
    FIGURES.injected += len(done)
    assert not failed and not ledger.stuck, (
        f"{failed} {ledger.stuck[:5]}\n--- daemon log ---\n{lab.log_tail()}")
    assert lab.daemon is not None and lab.daemon.alive()

    problems = lab.lost()
    listed = lab.live_ids()
    must_exist = ledger.created - ledger.rm_sent
    problems += [f"{cid[:12]}: created, never removed, not listed" for cid in
                 sorted(must_exist - listed)]
    lost = len({p.split()[0].rstrip(':') for p in problems})     # containers
    problems += lab.remove_extras()
    leaks = lab.leaks_since(baseline)
    problems += [f"leaked {k}: {v}" for k, vs in leaks.items() for v in vs]
    journal = lab.journal_problems()
    problems += [f"journal: {j}" for j in journal]
    print(f"\nrandom kills: {len(done)} kills ({done.count('daemon')} daemon, "
          f"{done.count('spawner')} spawner), {ledger.cycles} of {cycles} cycles done, "
          f"{len(ledger.created)} creates answered, {ledger.errors} calls retried")
    FIGURES.lost += lost
    FIGURES.leaks += sum(len(v) for v in leaks.values())
    FIGURES.journal_problems += len(journal)
    if problems:
        FIGURES.failed_cases.append("random kills")
    else:
        FIGURES.survived += len(done)
    assert ledger.cycles >= cycles, "the workers did not finish their cycles"
    assert not problems, "after random kills:\n  " + "\n  ".join(problems[:60]) + \
        "\n--- daemon log ---\n" + lab.log_tail()

import pytest

from aiorun.core import state as st
from aiorun.errors import Conflict

S = 1_000_000_000


def test_legal_and_illegal_transitions():
    s = st.State()
    assert s.status == "created" and s.describe() == "Created"
    s.to_running(123, now_ns=100 * S)
    assert s.to_docker()["Running"] and s.pid == 123
    with pytest.raises(Conflict, match="cannot start container: it is 'running'"):
        s.to_running(5)
    s.to_exited(3, now_ns=200 * S)
    assert s.pid == 0 and s.exit_code == 3
    s.to_removing()
    with pytest.raises(Conflict):
        s.to_running(5)


def test_dead_only_goes_to_removing():
    assert st.can_transition("dead", "removing")
    assert not st.can_transition("dead", "running")


@pytest.mark.parametrize("secs,text", [
    (0.5, "Less than a second"), (1, "1 second"), (2, "2 seconds"), (59, "59 seconds"),
    (60, "About a minute"), (119, "About a minute"), (180, "3 minutes"),
    (3600, "About an hour"), (3 * 3600, "3 hours"), (47 * 3600, "47 hours"),
    (3 * 86400, "3 days"), (15 * 86400, "2 weeks"), (90 * 86400, "3 months"),
    (800 * 86400, "2 years"),
])
def test_human_duration(secs, text):
    assert st.human_duration(secs) == text


def test_status_strings():
    s = st.State()
    s.to_running(1, now_ns=1000 * S)
    assert s.describe(now_ns=1180 * S) == "Up 3 minutes"
    s.to_exited(0, now_ns=1200 * S)
    assert s.describe(now_ns=1202 * S) == "Exited (0) 2 seconds ago"
    s.to_restarting()
    assert s.describe(now_ns=1203 * S).startswith("Restarting (0) 3 seconds ago")
    assert st.created_ago(0, now_ns=5 * S) == "5 seconds ago"


def test_docker_shape_and_roundtrip():
    s = st.State()
    d = s.to_docker()
    assert d["StartedAt"] == "0001-01-01T00:00:00Z"
    assert set(d) >= {"Status", "Running", "Pid", "ExitCode", "OOMKilled", "StartedAt",
                      "FinishedAt", "Error", "Paused", "Restarting", "Dead"}
    s.to_running(7, now_ns=1_700_000_000_123_456_000)
    assert s.to_docker()["StartedAt"] == "2023-11-14T22:13:20.123456Z"
    assert st.State.from_dict(s.to_dict()) == s
    assert st.State.from_dict({"status": "bogus"}).status == "dead"


def test_rfc3339_roundtrip():
    for ns in (0, 1_700_000_000_000_000_000, 1_700_000_000_000_000_001):
        assert st.parse_rfc3339(st.rfc3339(ns)) == ns
    assert st.parse_rfc3339("2023-11-14T23:13:20+01:00") == 1_700_000_000 * S


# -- the transition table, h11 style: every (status, event) pair -------------------------

#: What each event does from each status; a pair not listed must be refused.
EXPECTED = {
    ("created", "start"): "running", ("exited", "start"): "running",
    ("restarting", "start"): "running",
    ("running", "pause"): "paused", ("paused", "unpause"): "running",
    ("running", "exit"): "exited", ("paused", "exit"): "exited",
    ("restarting", "exit"): "exited",
    ("exited", "schedule_restart"): "restarting", ("restarting", "cancel_restart"): "exited",
    ("created", "remove"): "removing", ("exited", "remove"): "removing",
    ("restarting", "remove"): "removing", ("dead", "remove"): "removing",
    **{(s, "force_remove"): "removing"
       for s in ("created", "running", "paused", "restarting", "exited", "dead")},
    **{(s, "fail"): "dead"
       for s in ("created", "running", "paused", "restarting", "removing", "exited")},
}

METHODS = {
    "start": lambda s: s.to_running(42), "pause": lambda s: s.to_paused(),
    "unpause": lambda s: s.to_unpaused(), "exit": lambda s: s.to_exited(1),
    "schedule_restart": lambda s: s.to_restarting(), "cancel_restart": lambda s: s.cancel_restart(),
    "remove": lambda s: s.to_removing(), "force_remove": lambda s: s.to_removing(force=True),
    "fail": lambda s: s.to_dead(),
}


def test_every_event_has_a_method():
    assert set(METHODS) == set(st.EVENTS)


@pytest.mark.parametrize("status", st.STATUSES)
@pytest.mark.parametrize("event", st.EVENTS)
def test_transition_table(status, event):
    s = st.State(status=status, exit_code=7)
    want = EXPECTED.get((status, event))
    assert s.can(event) is (want is not None)
    if want is None:
        with pytest.raises(Conflict):
            METHODS[event](s)
        assert s.status == status and s.exit_code == 7
    else:
        METHODS[event](s)
        assert s.status == want
    assert st.TABLE.get((status, event)) == want


def test_transition_side_effects():
    s = st.State(status="exited", exit_code=3, error="boom", stopped_by_user=True)
    s.to_running(9, now_ns=5 * S)
    assert (s.pid, s.exit_code, s.error, s.started_at, s.stopped_by_user) == \
        (9, 0, "", 5 * S, False)
    s.to_exited(2, oom_killed=True, error="oom", now_ns=6 * S)
    assert (s.pid, s.exit_code, s.oom_killed, s.finished_at) == (0, 2, True, 6 * S)
    s.to_restarting()
    s.cancel_restart()
    assert s.status == "exited" and s.exit_code == 2      # the last exit is kept


@pytest.mark.parametrize("status,has_process,running", [
    ("created", False, False), ("running", True, True), ("paused", True, True),
    ("restarting", False, True), ("removing", False, False), ("exited", False, False),
    ("dead", False, False),
])
def test_predicates_agree_with_docker(status, has_process, running):
    s = st.State(status=status)
    assert s.has_process is has_process
    assert s.running is running
    assert s.to_docker()["Running"] is running       # Docker: running, paused or restarting

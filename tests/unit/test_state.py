import pytest

from aiorun.core import state as st
from aiorun.errors import Conflict

S = 1_000_000_000


def test_legal_and_illegal_transitions():
    s = st.State()
    assert s.status == "created" and s.describe() == "Created"
    s.set_running(123, now_ns=100 * S)
    assert s.to_docker()["Running"] and s.pid == 123
    with pytest.raises(Conflict, match="'running' to 'running'"):
        s.to(st.RUNNING)
    s.set_exited(3, now_ns=200 * S)
    assert s.pid == 0 and s.exit_code == 3
    s.to(st.REMOVING)
    with pytest.raises(Conflict):
        s.to(st.RUNNING)


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
    s.set_running(1, now_ns=1000 * S)
    assert s.describe(now_ns=1180 * S) == "Up 3 minutes"
    s.set_exited(0, now_ns=1200 * S)
    assert s.describe(now_ns=1202 * S) == "Exited (0) 2 seconds ago"
    s.to(st.RESTARTING)
    assert s.describe(now_ns=1203 * S).startswith("Restarting (0) 3 seconds ago")
    assert st.created_ago(0, now_ns=5 * S) == "5 seconds ago"


def test_docker_shape_and_roundtrip():
    s = st.State()
    d = s.to_docker()
    assert d["StartedAt"] == "0001-01-01T00:00:00Z"
    assert set(d) >= {"Status", "Running", "Pid", "ExitCode", "OOMKilled", "StartedAt",
                      "FinishedAt", "Error", "Paused", "Restarting", "Dead"}
    s.set_running(7, now_ns=1_700_000_000_123_456_000)
    assert s.to_docker()["StartedAt"] == "2023-11-14T22:13:20.123456Z"
    assert st.State.from_dict(s.to_dict()) == s
    assert st.State.from_dict({"status": "bogus"}).status == "dead"


def test_rfc3339_roundtrip():
    for ns in (0, 1_700_000_000_000_000_000, 1_700_000_000_000_000_001):
        assert st.parse_rfc3339(st.rfc3339(ns)) == ns
    assert st.parse_rfc3339("2023-11-14T23:13:20+01:00") == 1_700_000_000 * S

"""The health check config and status state machine (aiorun.core.health), table-driven."""

from __future__ import annotations

import pytest

from aiorun.core import health as hl
from aiorun.errors import InvalidArgument

S = hl.SECOND


def _r(code: int, out: str = "") -> hl.ProbeResult:
    return hl.ProbeResult("s", "e", code, out)


# (results as exit codes, in_start_period per result, retries) -> statuses after each,
# changes reported, final streak
TRANSITIONS = [
    ([0], [False], 3, ["healthy"], ["healthy"], 0),
    ([1, 1, 1], [False] * 3, 3, ["starting", "starting", "unhealthy"],
     [None, None, "unhealthy"], 3),
    ([1, 1, 0], [False] * 3, 3, ["starting", "starting", "healthy"], [None, None, "healthy"],
     0),
    # failures in the start period do not count...
    ([1, 1, 1, 1], [True, True, False, False], 2,
     ["starting", "starting", "starting", "unhealthy"], [None, None, None, "unhealthy"], 2),
    # ...unless the container was already healthy in it
    ([0, 1], [True, True], 1, ["healthy", "unhealthy"], ["healthy", "unhealthy"], 1),
    ([0, 1, 1, 0], [False] * 4, 2, ["healthy", "healthy", "unhealthy", "healthy"],
     ["healthy", None, "unhealthy", "healthy"], 0),
    ([-1], [False], 1, ["unhealthy"], ["unhealthy"], 1),          # a timeout is a failure
    ([2], [False], 1, ["unhealthy"], ["unhealthy"], 1),           # any non-zero code too
    ([1], [False], 0, ["unhealthy"], ["unhealthy"], 1),           # retries 0 acts as 1
]


@pytest.mark.parametrize("codes,in_start,retries,statuses,changes,streak", TRANSITIONS)
def test_transitions(codes, in_start, retries, statuses, changes, streak):
    h = hl.Health()
    h.start(123)
    got_status, got_changes = [], []
    for code, start in zip(codes, in_start):
        got_changes.append(h.record(_r(code), retries, start))
        got_status.append(h.status)
    assert got_status == statuses
    assert got_changes == changes
    assert h.failing_streak == streak


def test_log_keeps_the_last_five_and_truncates_output():
    h = hl.Health()
    for i in range(7):
        h.record(_r(0, str(i) + "x" * 5000), 3, False)
    assert [e["Output"][0] for e in h.log] == ["2", "3", "4", "5", "6"]
    assert all(len(e["Output"]) == hl.MAX_OUTPUT_LEN for e in h.log)
    assert set(h.log[0]) == {"Start", "End", "ExitCode", "Output"}


def test_start_and_stop_and_persistence():
    h = hl.Health(status="healthy", failing_streak=2, log=[{"ExitCode": 0}], for_start=1)
    h.start(5)
    assert (h.status, h.failing_streak, h.for_start, len(h.log)) == ("starting", 0, 5, 1)
    assert h.stopped() == "unhealthy" and h.stopped() is None
    again = hl.Health.from_dict(h.to_dict())
    assert again == h
    assert "ForStart" not in h.to_docker()


@pytest.mark.parametrize("image,create,want", [
    (None, None, None),
    ({"Test": ["CMD", "a"]}, None, {"Test": ["CMD", "a"]}),
    (None, {"Test": ["CMD-SHELL", "b"]}, {"Test": ["CMD-SHELL", "b"]}),
    ({"Test": ["CMD", "a"], "Interval": 5 * S, "Retries": 4},
     {"Test": [], "Timeout": 2 * S},
     {"Test": ["CMD", "a"], "Timeout": 2 * S, "Interval": 5 * S, "Retries": 4}),
    ({"Test": ["CMD", "a"], "Interval": 5 * S}, {"Test": ["NONE"]},
     {"Test": ["NONE"], "Interval": 5 * S}),
])
def test_merge(image, create, want):
    assert hl.merge_healthcheck(image, create) == want


@pytest.mark.parametrize("hc,argv", [
    (None, None), ({}, None), ({"Test": ["NONE"]}, None), ({"Test": []}, None),
    ({"Test": ["CMD", "curl", "-f", "x"]}, ["curl", "-f", "x"]),
    ({"Test": ["CMD-SHELL", "test -e /x"]}, ["/bin/sh", "-c", "test -e /x"]),
])
def test_probe_argv(hc, argv):
    assert hl.probe_argv(hc) == argv


def test_timing_defaults():
    t = hl.timing({})
    assert (t.interval, t.timeout, t.start_period, t.start_interval, t.retries) == \
        (30.0, 30.0, 0.0, 5.0, 3)
    t = hl.timing({"Interval": S // 2, "Retries": 1, "StartPeriod": 2 * S})
    assert (t.interval, t.retries, t.start_period) == (0.5, 1, 2.0)


@pytest.mark.parametrize("hc,message", [
    ({"Test": "CMD true"}, "expected an array of strings"),
    ({"Test": ["SHELL", "x"]}, "unknown type 'SHELL'"),
    ({"Test": ["CMD-SHELL", "  "]}, "the health check command is empty"),
    ({"Test": ["CMD", "x"], "Timeout": 999}, "Timeout in Healthcheck cannot be less than 1ms"),
    ({"Test": ["CMD", "x"], "Interval": "1s"}, "expected an integer"),
    ({"Test": ["CMD", "x"], "Retries": -2}, "Retries in Healthcheck cannot be negative"),
])
def test_bad_config(hc, message):
    with pytest.raises(InvalidArgument, match=message):
        hl.check_healthcheck(hc)


@pytest.mark.parametrize("text,ns", [
    ("0", 0), ("1s", S), ("500ms", S // 2), ("1m30s", 90 * S), ("1.5s", 3 * S // 2),
    ("2h", 7200 * S), ("10us", 10_000),
])
def test_parse_duration(text, ns):
    assert hl.parse_duration(text) == ns


@pytest.mark.parametrize("text", ["", "1", "s", "1x", "1s junk", "-"])
def test_parse_duration_refuses(text):
    with pytest.raises(InvalidArgument, match="invalid duration"):
        hl.parse_duration(text, "--health-interval")


@pytest.mark.parametrize("seconds,text", [
    (30, "30s"), (1.5, "1.5s"), (0.5, "500ms"), (90, "1m30s"), (3600, "1h0m0s"),
])
def test_go_duration(seconds, text):
    assert hl.go_duration(seconds) == text


@pytest.mark.parametrize("health,suffix", [
    (None, ""), ({"Status": "starting"}, " (health: starting)"),
    ({"Status": "healthy"}, " (healthy)"), ({"Status": "unhealthy"}, " (unhealthy)"),
])
def test_status_suffix(health, suffix):
    assert hl.status_suffix(health) == suffix


def test_health_filter():
    assert hl.health_filter(None, ["none"])
    assert hl.health_filter({"Status": "healthy"}, ["healthy", "starting"])
    assert not hl.health_filter({"Status": "healthy"}, ["unhealthy"])
    with pytest.raises(InvalidArgument, match="Unrecognised filter value for health: ok"):
        hl.health_filter(None, ["ok"])

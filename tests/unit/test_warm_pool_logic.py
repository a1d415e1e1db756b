"""The warm pool's pure parts: which creates may take a warm sandbox, the stale-cgroup
name pattern, and ``serve --warm-pool``'s parsing."""

from __future__ import annotations

import pytest

from aiorun.cli.daemon import parse_serve_args
from aiorun.cli.options import UsageError
from aiorun.runtime.spawner.pool import POOL_NAME, claim_eligible


@pytest.mark.parametrize("spec, ok", [
    ({}, True),
    ({"network": "none"}, True),
    ({"network": "bridge"}, True),                  # the daemon moves the veth in later
    ({"network": "host"}, False),                   # the host's network namespace
    ({"network": "/run/netns/x"}, False),           # joins a given netns
    ({"pid_host": True}, False),                    # the host's PID namespace
    ({"cgroup": {"parent": ""}}, True),
    ({"cgroup": {"parent": "aiorun"}}, True),        # the default, spelled out
    ({"cgroup": {"parent": "/aiorun/"}}, True),
    ({"cgroup": {"parent": "other"}}, False),       # pool cgroups live under the default
    ({"cgroup": {"parent": "aiorun/sub"}}, False),
    ({"cgroup": {"parent": "../x"}}, False),        # invalid: the cold path reports it
    ({"cgroup": {"memory": 1 << 30, "pids": 10}}, True),   # limits are written at claim
    ({"tty": True, "stdin": True}, True),
    ({"security": {"privileged": True}}, True),     # no device list: none is written
])
def test_claim_eligibility(spec, ok):
    assert claim_eligible(spec) is ok


@pytest.mark.parametrize("name, pid", [("pool-123-0", "123"), ("pool-1-17", "1"),
                                       ("pool-x-1", None), ("pool-12", None),
                                       ("poolside-1-1", None), ("c1pool-1-1", None)])
def test_stale_pool_names(name, pid):
    m = POOL_NAME.fullmatch(name)
    assert (m.group(1) if m else None) == pid


def test_serve_warm_pool_flag():
    assert parse_serve_args(["--warm-pool", "4"])["layer_limits_env"] == \
        {"AIORUN_WARM_POOL": "4"}
    assert parse_serve_args(["--warm-pool", "0"])["layer_limits_env"] == \
        {"AIORUN_WARM_POOL": "0"}
    for bad in ("-1", "x", "65"):
        with pytest.raises(UsageError):
            parse_serve_args(["--warm-pool", bad])

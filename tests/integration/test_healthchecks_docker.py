"""Health checks against a real ``aiorun serve``: the docker v28 CLI's ``--health-*`` flags,
an image's ``HEALTHCHECK`` through docker-py, ``.State.Health``, ``health_status`` events,
``(healthy)`` in ``ps`` and ``--filter health=``, timeouts and bad commands, and
docker-compose v1's ``depends_on: condition: service_healthy`` brought up twice and down.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from aiorun.testing.util import wait_until
from run_flags_util import DOCKER, Scope, daemon_scope

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not Path(DOCKER).exists(), reason="no docker v28 CLI")]

COMPOSE = shutil.which("docker-compose") or "/usr/bin/docker-compose"


@pytest.fixture(scope="module")
def s(busybox_tar):
    yield from daemon_scope(busybox_tar, "health")


@pytest.fixture(autouse=True)
def _clean(s: Scope):
    yield
    for cid in s.dk("ps", "-aq").split():
        s.docker("rm", "-f", cid, check=False)


def _health(s: Scope, name: str) -> dict:
    return json.loads(s.dk("inspect", "-f", "{{json .State.Health}}", name))


def test_health_cmd_flags_status_events_ps_and_filter(s: Scope):
    since = str(int(time.time()) - 1)
    s.dk("run", "-d", "--name", "hc", "--health-cmd", "test -e /tmp/ok && echo fine",
         "--health-interval", "300ms", "--health-retries", "5", "busybox", "sh", "-c",
         "sleep 1; touch /tmp/ok; sleep 300")
    assert "(health: starting)" in s.dk("ps", "--filter", "name=hc")
    h = wait_until(lambda: (lambda h: h if h["Status"] == "healthy" else None)(
        _health(s, "hc")), 20, "healthy")
    assert h["FailingStreak"] == 0
    assert h["Log"][-1]["ExitCode"] == 0 and h["Log"][-1]["Output"] == "fine\n"
    assert len(h["Log"]) <= 5 and set(h["Log"][0]) == {"Start", "End", "ExitCode", "Output"}
    assert "(healthy)" in s.dk("ps", "--filter", "name=hc")
    assert s.dk("ps", "-q", "--filter", "health=healthy").split() == \
        [s.dk("inspect", "-f", "{{.Id}}", "hc")[:12]]
    assert s.dk("ps", "-q", "--filter", "health=unhealthy").strip() == ""
    assert "Unrecognised filter value for health: fine" in \
        s.refused("ps", "--filter", "health=fine")
    cfg = json.loads(s.dk("inspect", "-f", "{{json .Config.Healthcheck}}", "hc"))
    assert cfg == {"Test": ["CMD-SHELL", "test -e /tmp/ok && echo fine"],
                   "Interval": 300_000_000, "Retries": 5}
    # the check fails from now on: unhealthy after 5 failures in a row
    s.dk("exec", "hc", "rm", "/tmp/ok")
    h = wait_until(lambda: (lambda h: h if h["Status"] == "unhealthy" else None)(
        _health(s, "hc")), 20, "unhealthy")
    assert h["FailingStreak"] >= 5 and "(unhealthy)" in s.dk("ps", "--filter", "name=hc")

    def events() -> list[str]:
        return s.dk("events", "--since", since, "--until", "0s", "--filter", "container=hc",
                    "--format", "{{.Action}}").split("\n")
    # (--until is in whole seconds: the last event may need the next second)
    got = wait_until(lambda: (lambda e: e if "health_status: unhealthy" in e else None)(
        events()), 5, "the health_status events")
    assert got.index("health_status: healthy") < got.index("health_status: unhealthy")
    # probes are not the container's execs (the one there is the `exec rm` above)
    assert len(json.loads(s.dk("inspect", "-f", "{{json .ExecIDs}}", "hc"))) == 1
    # a restart starts over; a stopped container is unhealthy
    s.dk("restart", "-t", "1", "hc")
    assert _health(s, "hc")["Status"] == "starting"
    s.dk("stop", "-t", "1", "hc")
    assert _health(s, "hc")["Status"] == "unhealthy"
    # a container without a health check has no Health, and matches health=none
    s.dk("run", "-d", "--name", "plain", "busybox", "sleep", "60")
    assert s.dk("inspect", "-f", "{{json .State.Health}}", "plain").strip() == "null"
    assert s.dk("ps", "-q", "--filter", "health=none").split() == \
        [s.dk("inspect", "-f", "{{.Id}}", "plain")[:12]]


def test_timeout_missing_binary_and_bad_commands(s: Scope):
    s.dk("run", "-d", "--name", "slow", "--health-cmd", "sleep 5", "--health-interval",
         "200ms", "--health-timeout", "300ms", "--health-retries", "1", "busybox",
         "sleep", "300")
    h = wait_until(lambda: (lambda h: h if h["Status"] == "unhealthy" else None)(
        _health(s, "slow")), 20, "unhealthy after a timeout")
    assert h["Log"][-1]["ExitCode"] == -1
    assert h["Log"][-1]["Output"] == "Health check exceeded timeout (300ms)"
    # the probe's process was killed (no sleep 5 piles up)
    assert "sleep 5" not in s.dk("top", "slow")

    s.dk("run", "-d", "--name", "nobin", "--health-cmd", "x", "--health-interval", "200ms",
         "busybox", "sleep", "300")
    # CMD form with a missing binary: the exec fails, the probe counts as failed
    import docker
    client = docker.APIClient(base_url=s.host)
    try:
        c = client.create_container("busybox", "sleep 300", name="nobin2", healthcheck={
            "Test": ["CMD", "/no/such/probe"], "Interval": 200_000_000, "Retries": 1})
        client.start(c["Id"])
        h = wait_until(lambda: (lambda h: h if h["Log"] else None)(_health(s, "nobin2")),
                       20, "a probe result")
        assert h["Log"][0]["ExitCode"] == -1
        assert "/no/such/probe" in h["Log"][0]["Output"]
        # bad health commands are refused at create, Docker's words where it has them
        for hc, message in (({"Test": ["CMD"]}, "the health check command is empty"),
                            ({"Test": ["CMD", "true"], "Interval": 10},
                             "Interval in Healthcheck cannot be less than 1ms"),
                            ({"Test": ["CMD", "true"], "Retries": -1},
                             "Retries in Healthcheck cannot be negative"),
                            ({"Test": ["BOGUS", "x"]}, "unknown type 'BOGUS'")):
            with pytest.raises(docker.errors.APIError, match=message):
                client.create_container("busybox", "true", healthcheck=hc)
    finally:
        client.close()
    h = wait_until(lambda: (lambda h: h if h["Log"] else None)(_health(s, "nobin")),
                   20, "a probe result")
    assert h["Log"][-1]["ExitCode"] == 127          # sh: x: not found
    assert "x: not found" in h["Log"][-1]["Output"]
    assert "invalid argument \"1y\" for \"--health-interval\" flag" in \
        s.refused("run", "--rm", "--health-interval", "1y", "--health-cmd", "true", "busybox",
                  "true")


def test_image_healthcheck_through_docker_py(s: Scope):
    import docker
    client = docker.DockerClient(base_url=s.host)
    try:
        dockerfile = (b"FROM busybox\n"
                      b"HEALTHCHECK --interval=200ms --retries=1 CMD [\"true\"]\n")
        image, _ = client.images.build(fileobj=io.BytesIO(dockerfile), tag="aiorhc:1",
                                       rm=True)
        assert image.attrs["Config"]["Healthcheck"]["Test"] == ["CMD", "true"]
        c = client.containers.run("aiorhc:1", "sleep 300", detach=True)
        wait_until(lambda: (c.reload(), c.attrs["State"]["Health"]["Status"] == "healthy")[1],
                   20, "healthy from the image's HEALTHCHECK")
        # a create's check replaces the image's; --no-healthcheck switches it off
        c2 = client.containers.run("aiorhc:1", "sleep 300", detach=True,
                                   healthcheck={"Test": ["NONE"]})
        c2.reload()
        assert "Health" not in c2.attrs["State"]
        c3 = client.containers.run("aiorhc:1", "sleep 300", detach=True, healthcheck={
            "Test": ["CMD-SHELL", "exit 3"], "Interval": 200_000_000})
        wait_until(lambda: (c3.reload(), c3.attrs["State"]["Health"]["Status"]
                            == "unhealthy")[1], 20, "unhealthy (create's check, image's "
                                                    "retries=1)")
        assert c3.attrs["Config"]["Healthcheck"]["Retries"] == 1
        for x in (c, c2, c3):
            x.remove(force=True)
        client.images.remove("aiorhc:1")
    finally:
        client.close()


def test_health_survives_a_daemon_restart(s: Scope):
    from aiorun.testing.daemon import start_daemon
    s.dk("run", "-d", "--name", "kept", "--health-cmd", "true", "--health-interval", "300ms",
         "busybox", "sleep", "300")
    wait_until(lambda: _health(s, "kept")["Status"] == "healthy", 20, "healthy")
    s.daemon.stop()                       # containers keep running
    s.daemon = start_daemon(s.paths)
    h = _health(s, "kept")
    assert h["Status"] == "healthy"       # re-adopted: not reset to starting
    last = h["Log"][-1]["End"]
    wait_until(lambda: _health(s, "kept")["Log"][-1]["End"] > last, 20,
               "probes running again after the restart")
    assert _health(s, "kept")["Status"] == "healthy"


COMPOSE_FILE = """\
version: "2.4"
services:
  db:
    image: busybox
    command: sh -c "sleep 2; touch /tmp/ready; sleep 300"
    stop_grace_period: 1s
{mode}    healthcheck:
      test: ["CMD-SHELL", "test -e /tmp/ready"]
      interval: 300ms
      timeout: 2s
      retries: 30
  web:
    image: busybox
    command: sleep 300
    stop_grace_period: 1s
{mode}    depends_on:
      db:
        condition: service_healthy
"""


def _compose(s: Scope, project: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, DOCKER_HOST=s.host)
    return subprocess.run([COMPOSE, "-p", "aiorhc", *args], cwd=project, env=env,
                          capture_output=True, text=True, timeout=120)


def _compose_up_twice_and_down(s: Scope, tmp_path: Path, mode: str) -> None:
    (tmp_path / "docker-compose.yml").write_text(COMPOSE_FILE.format(mode=mode))
    r = _compose(s, tmp_path, "up", "-d")
    assert r.returncode == 0, r.stderr
    db = json.loads(s.dk("inspect", "aiorhc_db_1"))[0]
    web = json.loads(s.dk("inspect", "aiorhc_web_1"))[0]
    assert db["State"]["Health"]["Status"] == "healthy"
    healthy_at = min(e["End"] for e in db["State"]["Health"]["Log"] if e["ExitCode"] == 0)
    # web was started only once db was healthy (RFC 3339 UTC strings compare in order)
    assert web["State"]["StartedAt"] > healthy_at
    assert web["State"]["Running"]
    r = _compose(s, tmp_path, "up", "-d")
    assert r.returncode == 0, r.stderr
    assert "is up-to-date" in r.stderr
    r = _compose(s, tmp_path, "down")
    assert r.returncode == 0, r.stderr
    assert s.dk("ps", "-aq").strip() == ""


@pytest.mark.skipif(not Path(COMPOSE).exists(), reason="no docker-compose")
def test_compose_service_healthy_up_twice_and_down(s: Scope, tmp_path):
    _compose_up_twice_and_down(s, tmp_path, "    network_mode: bridge\n")


@pytest.mark.skipif(not Path(COMPOSE).exists(), reason="no docker-compose")
def test_compose_default_network_up_twice_and_down(s: Scope, tmp_path):
    try:
        _compose_up_twice_and_down(s, tmp_path, "")      # the project's own network
    finally:
        _compose(s, tmp_path, "down")

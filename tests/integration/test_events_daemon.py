"""`aiorun events` and the in-daemon subscriber plugins on a real daemon."""

from __future__ import annotations

import json
import socket
import time

import pytest

from aiorun.testing.daemon import start_daemon
from aiorun.testing.util import free_port

pytestmark = pytest.mark.integration


def scrape(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200")
    return data.partition(b"\r\n\r\n")[2].decode()


def test_events_cli_since_until_filter_format(daemon, cli, busybox_tar):
    assert cli("import", str(busybox_tar), "busybox:latest").returncode == 0
    r = cli("run", "--rm", "--network", "none", "--name", "evt", "busybox", "true")
    assert r.returncode == 0, r.stderr
    until = str(time.time() + 0.5)
    r = cli("events", "--since", "0", "--until", until, "--filter", "container=evt",
            "--format", "{{json .}}")
    assert r.returncode == 0, r.stderr
    evs = [json.loads(x) for x in r.stdout.splitlines()]
    assert [e["Action"] for e in evs] == ["create", "attach", "start", "die", "destroy"]
    assert all(e["Actor"]["Attributes"]["name"] == "evt" for e in evs)
    r = cli("events", "--since", "1h", "--until", until, "-f", "type=image")
    assert r.returncode == 0, r.stderr
    line = r.stdout.splitlines()[0]
    assert " image import sha256:" in line and "(name=busybox:latest)" in line
    r = cli("events", "--since", "0", "--until", until, "--format",
            "{{.Type}}/{{.Action}}", "-f", "type=daemon")
    assert r.stdout.splitlines() == ["daemon/start"]
    r = cli("events", "-f", "bogus=1", "--until", until)
    assert r.returncode != 0 and "invalid filter" in r.stderr


def test_in_daemon_plugins(aiorun_paths, busybox_tar, cli, tmp_path):
    port = free_port()
    log = tmp_path / "events.jsonl"
    d = start_daemon(aiorun_paths, extra_env={
        "AIORUN_EVENT_PLUGINS": f"metrics=127.0.0.1:{port},logging={log}"})
    try:
        assert cli("import", str(busybox_tar), "busybox:latest").returncode == 0
        r = cli("run", "--network", "none", "busybox", "sh", "-c", "exit 7")
        assert r.returncode == 7
        deadline = time.monotonic() + 10
        while True:
            try:
                text = scrape(port)
            except OSError:          # the plugin's listener may not be up yet
                text = ""
            if 'aiorun_container_exits_total{code="7"} 1' in text:
                break
            assert time.monotonic() < deadline, text
            time.sleep(0.05)
        assert 'aiorun_containers{state="exited"} 1' in text
        assert "aiorun_container_starts_total 1" in text
        assert "aiorun_container_start_latency_seconds_count 1" in text
        recs = [json.loads(x) for x in log.read_text().splitlines()]
        actions = [(r["type"], r["action"]) for r in recs]
        assert ("image", "import") in actions and ("container", "die") in actions
        seqs = [r["seq"] for r in recs]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    finally:
        d.stop_all()
    daemon_log = aiorun_paths.daemon_log.read_text()
    assert "Traceback" not in daemon_log and "event plugin" not in daemon_log

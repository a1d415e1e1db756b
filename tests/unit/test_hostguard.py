"""The test session guard's bookkeeping (aiorun.testing.hostguard)."""

from __future__ import annotations

import os

from aiorun.testing import hostguard as H


def test_leaks_are_what_appeared():
    before = {"links": {"eth0"}, "processes": set()}
    after = {"links": {"eth0", "aior1230"}, "processes": {"42 aiorun serve"}}
    assert H.leaks(before, after) == {"links": ["aior1230"], "processes": ["42 aiorun serve"]}
    assert H.leaks(after, before) == {}


def test_isolation_points_aiorun_away_from_the_default_roots(monkeypatch, tmp_path):
    for k in (H.MARKER, "AIORUN_ROOT", "AIORUN_RUN", "AIORUN_SOCKET"):
        monkeypatch.setenv(k, "x")  # restored by monkeypatch after the test
    token, base = H.isolate_environment()
    try:
        assert os.environ[H.MARKER] == token and len(token) == 16
        assert os.environ["AIORUN_ROOT"] == str(base / "root")
        assert os.environ["AIORUN_RUN"] == str(base / "run")
        assert "AIORUN_SOCKET" not in os.environ
        # the fallback roots are not made: using them is what the guard reports
        assert H.snapshot(token, base)["fallback root"] == set()
        (base / "root").mkdir()
        assert H.snapshot(token, base)["fallback root"] == {str(base / "root")}
    finally:
        (base / "root").rmdir()
        base.rmdir()


def test_report_names_the_categories_and_the_shared_host_switch():
    text = H.report({"fallback root": ["/tmp/x/root"], "nft tables": ["table ip aiorun_1"]})
    assert "fallback root:" in text and "without the aiorun_paths fixture" in text
    assert "AIORUN_TEST_SHARED_HOST=1" in text
    assert "AIORUN_TEST_SHARED_HOST" not in H.report({"processes": ["1 sleep"]})

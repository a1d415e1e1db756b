"""Pure parts of the system CLI and the serve option parser."""

import pytest

from aiorun.serve import Listeners
from aiorun.cli.daemon import _first_error, parse_serve_args
from aiorun.cli.options import UsageError
from aiorun.cli.system import format_size, render_df, render_info, want_json
from aiorun.errors import NotFound


def test_serve_args(monkeypatch):
    monkeypatch.delenv("AIORUN_BACKEND", raising=False)
    monkeypatch.delenv("AIORUN_STORAGE_DRIVER", raising=False)
    assert parse_serve_args([]) == {"storage_driver": None, "backend": "asyncio", "debug": False,
                                    "listen": Listeners()}
    assert parse_serve_args(["--backend=trio", "-s", "copy", "-D"]) == {
        "storage_driver": "copy", "backend": "trio", "debug": True, "listen": Listeners()}
    monkeypatch.setenv("AIORUN_BACKEND", "trio")
    assert parse_serve_args([])["backend"] == "trio"
    for bad in (["--backend", "curio"], ["--storage-driver"], ["--what"], ["extra"]):
        with pytest.raises(UsageError):
            parse_serve_args(bad)


def test_serve_listen_args(tmp_path):
    got = parse_serve_args(["-H", "tcp://127.0.0.1:2375", "-H", "unix:///tmp/x.sock",
                            "--metrics-addr", "127.0.0.1:9323"])["listen"]
    assert [str(h) for h in got.hosts] == ["tcp://127.0.0.1:2375", "unix:///tmp/x.sock"]
    assert got.metrics_addr == "127.0.0.1:9323" and not got.tls.enabled
    got = parse_serve_args(["-H", "tcp://0.0.0.0:2376", "--tlsverify", "--tlscacert", "ca",
                            "--tlscert", "c", "--tlskey", "k"])["listen"]
    assert got.tls.verify and got.tls.enabled and got.tls.cacert == "ca"
    for bad in (["-H", "tcp://0.0.0.0:2375"],                      # plain TCP off loopback
                ["-H", "tcp://10.1.2.3:2376", "--tls", "--tlscert", "c", "--tlskey", "k"],
                ["-H", "fd://"], ["-H", "tcp://127.0.0.1:99999"], ["-H", "unix://rel"],
                ["--tlsverify"],                                  # no tcp:// address
                ["--tlscert", "c"],                               # without --tls
                ["--metrics-addr", "nowhere"]):
        with pytest.raises(UsageError):
            parse_serve_args(bad)


def test_first_error_unwraps_groups():
    inner = NotFound("x")
    assert _first_error(ExceptionGroup("g", [ValueError(), ExceptionGroup("h", [inner])])) \
        is inner
    assert _first_error(ExceptionGroup("g", [inner])) is inner


def test_format_and_render():
    assert format_size(0) == "0B" and format_size(1536) == "1.5KiB"
    assert want_json("json") and want_json("{{json .}}") and not want_json(None)
    with pytest.raises(UsageError):
        want_json("{{.ID}}")
    text = render_info({"Containers": 2, "ContainersRunning": 1, "Driver": "overlay",
                        "StorageDriverReason": "requested", "DriverStatus": [["a", "b"]],
                        "Backend": "trio", "Managers": ["events"]})
    assert " Containers: 2" in text and "  Selected: requested" in text and "  a: b" in text
    assert " Async Backend: trio" in text
    assert render_df({}).splitlines()[1].split() == ["Images", "0", "0", "0B"]

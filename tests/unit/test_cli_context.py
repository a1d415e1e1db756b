"""The CLI's Context finds the daemon socket without importing aiorun.config (start-up
cost), by the same rule as Paths.socket."""

import os
import subprocess
import sys

import pytest

from aiorun.cli.main import Context
from aiorun.config import Paths


@pytest.mark.parametrize("run_root,env_run,env_sock", [
    (None, None, None), ("/tmp/x-run", None, None), (None, "/tmp/env-run", None),
    ("/tmp/x-run", "/tmp/env-run", None), (None, None, "/tmp/s.sock"),
    ("rel/run", None, None), ("/tmp/a/", None, None)])
def test_socket_path_matches_paths(monkeypatch, run_root, env_run, env_sock):
    for k, v in (("AIORUN_RUN", env_run), ("AIORUN_SOCKET", env_sock)):
        if v is None:
            monkeypatch.delenv(k, raising=False)
        else:
            monkeypatch.setenv(k, v)
    ctx = Context(None, run_root, None, False)
    fast = ctx.socket_path
    assert os.path.normpath(fast) == os.path.normpath(str(Paths.from_env(None, run_root).socket))
    assert ctx.paths.run == Paths.from_env(None, run_root).run
    assert ctx.socket_path == str(ctx.paths.socket)
    assert Context(None, run_root, "unix:///tmp/h.sock", False).socket_path == "/tmp/h.sock"


#: Modules `aiorun run` must not load (each costs 1–7 ms of every start): json and
#: urllib.parse (aiorun.api.wire does their work), socket and signal (their C modules do),
#: and what they would pull in (re, enum, collections, functools).
HEAVY = ('dataclasses', 'aiorun.config', 'aiorun.core.spec', 'anyio', 'h11', 'argparse',
         'typing', 'json', 're', 'enum', 'collections', 'functools', 'socket', 'signal',
         'selectors', 'urllib.parse', 'ipaddress', 'threading', 'importlib', 'struct',
         'aiorun.cli.progress')


def test_run_path_imports_stay_lean():
    """What `aiorun run` loads before talking to the daemon: no config/dataclasses/spec,
    none of the heavy standard modules, also once a request is encoded and an answer read."""
    code = ("import sys, aiorun.cli.main as m, aiorun.cli.containers as c\n"
            "import aiorun.cli.pull, aiorun.cli.autostart, aiorun.cli.common\n"
            "ctx = m.Context(None, None, None, False); ctx.socket_path\n"
            "o, rest = c.cmd_run.command.parse(['--rm', '-e', 'A=1', 'busybox', 'true'])\n"
            "from aiorun.cli.createbody import build_create\n"
            "body, name = build_create(o, rest)\n"
            "assert body['HostConfig']['AutoRemove'] and body['Env'] == ['A=1'], body\n"
            "from aiorun.api.wire import dumps, loads, quote, urlencode\n"
            "assert loads(dumps(body).encode()) == body\n"
            "urlencode({'name': 'a b', 'condition': 'removed'}); quote('/containers/x y')\n"
            "from aiorun.cli.terminal import forward_signals\n"
            "forward_signals(None, 'c1')()\n"
            f"print(sorted(k for k in {HEAVY!r} if k in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_console_command_exits_with_the_verbs_status_and_flushed_output(tmp_path):
    """The fast exit (os._exit after flushing) keeps exit codes and buffered output."""
    env = dict(os.environ, AIORUN_RUN=str(tmp_path), AIORUN_ROOT=str(tmp_path / "root"))
    p = subprocess.run([sys.executable, "-m", "aiorun.cli.main", "--help"], env=env,
                       capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.startswith("usage: aiorun")
    p = subprocess.run([sys.executable, "-m", "aiorun.cli.main", "no-such-verb"], env=env,
                       capture_output=True, text=True)
    assert p.returncode == 1 and "is not an aiorun command" in p.stderr
    # -H: never auto-starts a daemon; the error is reported and the status kept
    p = subprocess.run([sys.executable, "-m", "aiorun.cli.main", "-H",
                        f"unix://{tmp_path}/none.sock", "ps"], env=env,
                       capture_output=True, text=True)
    assert p.returncode != 0 and "cannot reach" in p.stderr

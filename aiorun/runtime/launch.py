"""Starting the spawner process (from a worker thread of the daemon).

Start-up time is in every ``run``'s latency budget, hence the interpreter flags below.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ..errors import Unavailable


def start_spawner(run: Path, idle_exit: float | None) -> None:
    """Start ``python -m aiorun.runtime.spawner`` (it double-forks: the process we start
    exits once the socket listens, so we reap it here and never keep a zombie)."""
    run.mkdir(parents=True, exist_ok=True)
    import msgpack
    # Start-up time is in every `run`'s latency budget: skip `site` (-S, ~15 ms with the
    # editable-install finder) and put exactly our package and msgpack on the path; let
    # it write bytecode even when PYTHONDONTWRITEBYTECODE is set (else every module is
    # recompiled on every start).
    pkg_parent = str(Path(__file__).resolve().parents[2])
    msgpack_parent = str(Path(msgpack.__file__).resolve().parents[1])
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPATH"] = os.pathsep.join(
        [pkg_parent, msgpack_parent] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH")
                                        else []))
    with open(run / "spawner.log", "ab") as log:
        idle = ([] if idle_exit is None
                else ["--idle-exit", str(float(idle_exit))])
        proc = subprocess.Popen(
            [sys.executable, "-S", "-m", "aiorun.runtime.spawner", "--run", str(run)]
            + idle,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
            start_new_session=True, close_fds=True, env=env, cwd="/")
    rc = proc.wait()
    if rc not in (0, 3):              # 3: another spawner holds the lock (still starting)
        tail = (run / "spawner.log").read_text(errors="replace")[-2000:]
        raise Unavailable(f"the runtime spawner failed to start (exit {rc}): {tail}")

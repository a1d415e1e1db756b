"""OCI hooks (config.md "POSIX-platform Hooks"): each runs with the container's state JSON on
stdin, its own ``args`` (argv, ``args[0]`` included) and ``env``, and an optional timeout in
seconds. Where each kind runs, in aiorun-runtime:

- ``prestart``, ``createRuntime``: by ``create``, in the runtime's namespaces, once PID 1 is
  ready (runc runs them a step earlier, while PID 1 sets up its rootfs: no observable
  difference for a hook that reads the state and the PID's /proc entries). State
  ``creating``.
- ``createContainer``: by PID 1 in the container's namespaces, after its mounts and before
  pivot_root (so the path resolves on the host, as the spec asks). State ``creating``,
  ``pid`` as PID 1 sees itself.
- ``startContainer``: by PID 1, inside the container, after ``start`` and before execve
  (path resolved in the container). State ``created``.
- ``poststart``: by ``start``; ``poststop``: by ``delete``. A failure of these two is a
  warning, as the spec says; any other failing hook fails the operation.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

from .config import Hook
from .errors import HookError


def run_hook(kind: str, hook: Hook, state: dict[str, Any]) -> None:
    """Run one hook; HookError names the hook and what it said."""
    argv = hook.args or [hook.path]
    env = dict(kv.partition("=")[::2] for kv in hook.env)
    # stdout is piped and dropped, not /dev/null: inside the container (createContainer,
    # startContainer) the device cgroup may refuse opening /dev/null.
    try:
        r = subprocess.run(argv, executable=hook.path, env=env,
                           input=json.dumps(state).encode(), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=hook.timeout)
    except subprocess.TimeoutExpired:
        raise HookError(f"{kind} hook {hook.path} timed out after {hook.timeout}s") from None
    except OSError as e:
        raise HookError(f"{kind} hook {hook.path}: {e.strerror}") from None
    except subprocess.SubprocessError as e:
        raise HookError(f"{kind} hook {hook.path}: {e}") from None
    if r.returncode != 0:
        said = r.stderr.decode(errors="replace").strip()
        raise HookError(f"{kind} hook {hook.path} exited with status {r.returncode}"
                        + (f": {said}" if said else ""))


def run_all(kind: str, hooks: list[Hook], state: dict[str, Any]) -> None:
    for h in hooks:
        run_hook(kind, h, state)


def to_json(hooks: list[Hook]) -> list[dict[str, Any]]:
    return [{"path": h.path, "args": h.args, "env": h.env, "timeout": h.timeout}
            for h in hooks]


def from_json(items: list[dict[str, Any]]) -> list[Hook]:
    return [Hook(i["path"], i.get("args") or [], i.get("env") or [], i.get("timeout"))
            for i in items]

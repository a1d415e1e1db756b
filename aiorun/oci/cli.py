"""``aiorun-runtime``: the OCI runtime command line, as runc's (what containerd's runc shim,
podman's conmon and CRI-O call).

    aiorun-runtime [--root DIR] [--log FILE] [--log-format text|json] [--debug]
                   [--systemd-cgroup] VERB [options] ID

Errors go to stderr and, with ``--log``, to the log file (one JSON object per line with
``--log-format json``: ``{"level": "error", "msg": ..., "time": ...}``, where containerd
reads them from). Exit status 1 on error; ``run`` and ``exec`` in the foreground exit with
the process's status.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, NoReturn

from . import verbs
from .config import ConfigError
from .hooks import HookError
from .spec import default_spec, features
from .state import DEFAULT_ROOT, OCI_VERSION, StateError

VERSION = "0.1.0"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise verbs.VerbError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="aiorun-runtime", description="aiorun's OCI runtime (runc-compatible "
                                                     "command line)")
    p.add_argument("--root", default=DEFAULT_ROOT, help="state directory (default %(default)s)")
    p.add_argument("--log", default="", help="append errors to this file")
    p.add_argument("--log-format", default="text", choices=("text", "json"))
    p.add_argument("--debug", action="store_true", help="accepted; nothing more is logged")
    p.add_argument("--systemd-cgroup", action="store_true",
                   help="refused: aiorun-runtime manages cgroupfs paths only")
    p.add_argument("-v", "--version", action="store_true")
    sub = p.add_subparsers(dest="verb", metavar="VERB")

    def verb(name: str, help_: str, with_id: bool = True) -> argparse.ArgumentParser:
        v = sub.add_parser(name, help=help_)
        if with_id:
            v.add_argument("id")
        return v

    for name in ("create", "run"):
        v = verb(name, "create a container from a bundle" if name == "create"
                 else "create, start, wait and delete")
        v.add_argument("-b", "--bundle", default=".")
        v.add_argument("--pid-file", default="")
        v.add_argument("--console-socket", default="")
        v.add_argument("--no-pivot", action="store_true",
                       help="refused: aiorun-runtime always uses pivot_root")
        v.add_argument("--no-new-keyring", action="store_true",
                       help="accepted: no session keyring is made")
        if name == "run":
            v.add_argument("-d", "--detach", action="store_true")
    verb("start", "start a created container")
    verb("state", "print the container's OCI state")
    k = verb("kill", "send a signal (default SIGTERM)")
    k.add_argument("signal", nargs="?", default="SIGTERM")
    k.add_argument("-a", "--all", action="store_true")
    d = verb("delete", "delete a stopped container")
    d.add_argument("-f", "--force", action="store_true")
    e = verb("exec", "run a process in a running container")
    e.add_argument("command", nargs=argparse.REMAINDER)
    e.add_argument("-p", "--process", default="")
    e.add_argument("-t", "--tty", action="store_true")
    e.add_argument("--console-socket", default="")
    e.add_argument("--pid-file", default="")
    e.add_argument("-d", "--detach", action="store_true")
    e.add_argument("--cwd", default="")
    e.add_argument("-e", "--env", action="append", default=[])
    e.add_argument("-u", "--user", default="")
    ps = verb("ps", "list the container's processes")
    ps.add_argument("-f", "--format", default="table", choices=("table", "json"))
    verb("pause", "freeze every process of the container")
    verb("resume", "thaw a paused container")
    u = verb("update", "change resource limits")
    u.add_argument("-r", "--resources", default="", help="LinuxResources JSON file, - = stdin")
    u.add_argument("--memory", type=int)
    u.add_argument("--memory-swap", type=int)
    u.add_argument("--cpu-shares", type=int)
    u.add_argument("--cpu-quota", type=int)
    u.add_argument("--cpu-period", type=int)
    u.add_argument("--pids-limit", type=int)
    ls = verb("list", "list containers", with_id=False)
    ls.add_argument("-f", "--format", default="table", choices=("table", "json"))
    ls.add_argument("-q", "--quiet", action="store_true")
    verb("features", "print the runtime-spec features JSON", with_id=False)
    sp = verb("spec", "write a default config.json", with_id=False)
    sp.add_argument("-b", "--bundle", default=".")
    sp.add_argument("--rootless", action="store_true", help="refused: not supported")
    return p


def _log_error(args: argparse.Namespace | None, msg: str) -> None:
    print(f"aiorun-runtime: {msg}", file=sys.stderr)
    if args is None or not args.log:
        return
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    line = (json.dumps({"level": "error", "msg": msg, "time": now})
            if args.log_format == "json" else f'time="{now}" level=error msg="{msg}"')
    try:
        with open(args.log, "a") as f:
            f.write(line + "\n")
    except OSError:
        pass


def _process_for_exec(a: argparse.Namespace) -> dict[str, Any]:
    if a.process:
        with open(a.process) as f:
            proc = json.load(f)
        if not isinstance(proc, dict):
            raise verbs.VerbError(f"{a.process}: a JSON process object was expected")
        return proc
    if not a.command:
        raise verbs.VerbError("exec needs a command or --process")
    from . import state as st
    rec = st.load(a.root, a.id)
    with open(os.path.join(rec.bundle, "config.json")) as f:
        base = dict(json.load(f).get("process") or {})
    base["args"] = a.command[1:] if a.command[:1] == ["--"] else a.command
    base["terminal"] = a.tty
    base["env"] = list(base.get("env") or []) + a.env
    if a.cwd:
        base["cwd"] = a.cwd
    if a.user:
        uid, _, gid = a.user.partition(":")
        try:
            base["user"] = {"uid": int(uid), "gid": int(gid or 0)}
        except ValueError:
            raise verbs.VerbError(f"--user {a.user!r}: give uid[:gid] as numbers") from None
    return base


def _dispatch(a: argparse.Namespace) -> int:
    if a.version:
        print(f"aiorun-runtime version {VERSION}\nspec: {OCI_VERSION}")
        return 0
    if a.systemd_cgroup:
        raise verbs.VerbError("--systemd-cgroup is not supported: aiorun-runtime manages "
                              "cgroupfs paths (set the cgroup manager to cgroupfs)")
    if a.verb is None:
        build_parser().print_help()
        return 0
    root = a.root
    if getattr(a, "no_pivot", False):
        raise verbs.VerbError("--no-pivot is not supported: aiorun-runtime always uses "
                              "pivot_root (a rootfs on a ramdisk cannot be pivoted from)")
    if a.verb == "create":
        verbs.create(root, a.id, a.bundle, a.pid_file, a.console_socket)
    elif a.verb == "run":
        return verbs.run(root, a.id, a.bundle, a.pid_file, a.console_socket, a.detach)
    elif a.verb == "start":
        verbs.start(root, a.id)
    elif a.verb == "state":
        print(json.dumps(verbs.state(root, a.id), indent=2))
    elif a.verb == "kill":
        verbs.kill(root, a.id, a.signal, a.all)
    elif a.verb == "delete":
        verbs.delete(root, a.id, a.force)
    elif a.verb == "exec":
        return verbs.exec_process(root, a.id, _process_for_exec(a), a.pid_file,
                                  a.console_socket, a.detach)
    elif a.verb == "ps":
        pids = verbs.ps(root, a.id)
        if a.format == "json":
            print(json.dumps(pids))
        else:
            print("PID    CMD")
            for p in pids:
                try:
                    with open(f"/proc/{p}/cmdline", "rb") as f:
                        cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
                except OSError:
                    cmd = ""
                print(f"{p:<6} {cmd}")
    elif a.verb in ("pause", "resume"):
        verbs.pause(root, a.id, a.verb == "pause")
    elif a.verb == "update":
        res: dict[str, Any] = {}
        if a.resources:
            text = sys.stdin.read() if a.resources == "-" else open(a.resources).read()
            res = json.loads(text)
        for flag, (group, key) in {"memory": ("memory", "limit"),
                                   "memory_swap": ("memory", "swap"),
                                   "cpu_shares": ("cpu", "shares"),
                                   "cpu_quota": ("cpu", "quota"),
                                   "cpu_period": ("cpu", "period"),
                                   "pids_limit": ("pids", "limit")}.items():
            if getattr(a, flag) is not None:
                res.setdefault(group, {})[key] = getattr(a, flag)
        verbs.update(root, a.id, res)
    elif a.verb == "list":
        items = verbs.list_all(root)
        if a.quiet:
            print("\n".join(i["id"] for i in items))
        elif a.format == "json":
            print(json.dumps(items))
        else:
            print(f"{'ID':<24} {'PID':<8} {'STATUS':<10} BUNDLE")
            for i in items:
                print(f"{i['id']:<24} {i.get('pid', 0):<8} {i['status']:<10} {i['bundle']}")
    elif a.verb == "features":
        print(json.dumps(features(), indent=2))
    elif a.verb == "spec":
        if a.rootless:
            raise verbs.VerbError("--rootless is not supported")
        path = os.path.join(a.bundle, "config.json")
        if os.path.exists(path):
            raise verbs.VerbError(f"File {path} exists. Remove it first")
        with open(path, "w") as f:
            json.dump(default_spec(), f, indent=2)
    return 0


def main(argv: list[str] | None = None) -> None:
    args: argparse.Namespace | None = None
    try:
        args = build_parser().parse_args(argv)
        code = _dispatch(args)
    except (verbs.VerbError, ConfigError, StateError, HookError) as e:
        _log_error(args, str(e))
        code = 1
    except OSError as e:
        _log_error(args, f"{e.strerror or e}" + (f": {e.filename}" if e.filename else ""))
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    main()

"""``aiorun-runtime``: the OCI runtime command line, as runc's (what containerd's runc shim,
podman's conmon and CRI-O call).

    aiorun-runtime [--root DIR] [--log FILE] [--log-format text|json] [--debug]
                   [--systemd-cgroup] VERB [options] ID

Errors go to stderr and, with ``--log``, to the log file (one JSON object per line with
``--log-format json``: ``{"level": "error", "msg": ..., "time": ...}``, where containerd
reads them from). Exit status 1 on error; ``run`` and ``exec`` in the foreground exit with
the process's status.

Every call is a new interpreter, so each verb imports only what it uses: ``state``,
``start``, ``kill`` and ``delete`` never load the container set-up code (bench/oci_runtime).
"""

from __future__ import annotations

import json
import os
import sys
import time
TYPE_CHECKING = False                    # not typing's: each call pays its imports
if TYPE_CHECKING:
    from typing import Any

from .args import Args, parse, usage
from .errors import OciError, VerbError
from .state import DEFAULT_ROOT, OCI_VERSION

VERSION = "0.1.0"


def _log_error(a: Args | None, msg: str) -> None:
    print(f"aiorun-runtime: {msg}", file=sys.stderr)
    log = a.str("log") if a is not None else ""
    if not log:
        return
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    line = (json.dumps({"level": "error", "msg": msg, "time": now})
            if a is not None and a.str("log_format") == "json"
            else f'time="{now}" level=error msg="{msg}"')
    try:
        with open(log, "a") as f:
            f.write(line + "\n")
    except OSError:
        pass


def _process_for_exec(a: Args, root: str) -> dict[str, Any]:
    if a.str("process"):
        with open(a.str("process")) as f:
            proc = json.load(f)
        if not isinstance(proc, dict):
            raise VerbError(f"{a.str('process')}: a JSON process object was expected")
        return proc
    if not a.rest:
        raise VerbError("exec needs a command or --process")
    from . import state as st
    rec = st.load(root, a.pos["id"])
    with open(os.path.join(rec.bundle, "config.json")) as f:
        base = dict(json.load(f).get("process") or {})
    base["args"] = a.rest
    base["terminal"] = bool(a.get("tty"))
    env = a.get("env") or []
    assert isinstance(env, list)
    base["env"] = list(base.get("env") or []) + env
    if a.str("cwd"):
        base["cwd"] = a.str("cwd")
    if a.str("user"):
        uid, _, gid = a.str("user").partition(":")
        try:
            base["user"] = {"uid": int(uid), "gid": int(gid or 0)}
        except ValueError:
            raise VerbError(f"--user {a.str('user')!r}: give uid[:gid] as numbers") from None
    return base


def _int_opt(a: Args, name: str) -> int | None:
    v = a.str(name)
    if not v:
        return None
    try:
        return int(v)
    except ValueError:
        raise VerbError(f"--{name.replace('_', '-')} {v!r}: an integer was expected") from None


def _dispatch(a: Args) -> int:
    if a.get("version"):
        print(f"aiorun-runtime version {VERSION}\nspec: {OCI_VERSION}")
        return 0
    if a.get("help") or not a.verb:
        print(usage(a.verb))
        return 0
    if a.get("systemd_cgroup"):
        raise VerbError("--systemd-cgroup is not supported: aiorun-runtime manages "
                        "cgroupfs paths (set the cgroup manager to cgroupfs)")
    if a.get("no_pivot"):
        raise VerbError("--no-pivot is not supported: aiorun-runtime always uses "
                        "pivot_root (a rootfs on a ramdisk cannot be pivoted from)")
    if a.str("preserve_fds") not in ("", "0"):
        raise VerbError("--preserve-fds is not supported by aiorun-runtime")
    if a.str("log_format") not in ("", "text", "json"):
        raise VerbError(f"--log-format {a.str('log_format')!r}: text or json")
    root = a.str("root", DEFAULT_ROOT)
    cid = a.pos.get("id", "")
    from . import verbs
    if a.verb == "create":
        verbs.create(root, cid, a.str("bundle", "."), a.str("pid_file"),
                     a.str("console_socket"))
    elif a.verb == "run":
        return verbs.run(root, cid, a.str("bundle", "."), a.str("pid_file"),
                         a.str("console_socket"), bool(a.get("detach")))
    elif a.verb == "start":
        verbs.start(root, cid)
    elif a.verb == "state":
        print(json.dumps(verbs.state(root, cid), indent=2))
    elif a.verb == "kill":
        verbs.kill(root, cid, a.pos.get("signal", "SIGTERM"), bool(a.get("all")))
    elif a.verb == "delete":
        verbs.delete(root, cid, bool(a.get("force")))
    elif a.verb == "exec":
        return verbs.exec_process(root, cid, _process_for_exec(a, root), a.str("pid_file"),
                                  a.str("console_socket"), bool(a.get("detach")))
    elif a.verb == "ps":
        _ps(verbs.ps(root, cid), a.str("format", "table"))
    elif a.verb in ("pause", "resume"):
        verbs.pause(root, cid, a.verb == "pause")
    elif a.verb == "update":
        verbs.update(root, cid, _resources(a))
    elif a.verb == "list":
        _list(verbs.list_all(root), a.str("format", "table"), bool(a.get("quiet")))
    elif a.verb == "features":
        from .spec import features
        print(json.dumps(features(), indent=2))
    elif a.verb == "spec":
        _spec(a)
    return 0


def _ps(pids: list[int], fmt: str) -> None:
    if fmt == "json":
        print(json.dumps(pids))
        return
    if fmt != "table":
        raise VerbError(f"--format {fmt!r}: table or json")
    print("PID    CMD")
    for p in pids:
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            cmd = ""
        print(f"{p:<6} {cmd}")


def _resources(a: Args) -> dict[str, Any]:
    res: dict[str, Any] = {}
    if a.str("resources"):
        text = sys.stdin.read() if a.str("resources") == "-" else open(a.str("resources")).read()
        res = json.loads(text)
    for flag, (group, key) in {"memory": ("memory", "limit"),
                               "memory_swap": ("memory", "swap"),
                               "cpu_shares": ("cpu", "shares"),
                               "cpu_quota": ("cpu", "quota"),
                               "cpu_period": ("cpu", "period"),
                               "pids_limit": ("pids", "limit")}.items():
        v = _int_opt(a, flag)
        if v is not None:
            res.setdefault(group, {})[key] = v
    return res


def _list(items: list[dict[str, Any]], fmt: str, quiet: bool) -> None:
    if quiet:
        print("\n".join(i["id"] for i in items))
    elif fmt == "json":
        print(json.dumps(items))
    else:
        print(f"{'ID':<24} {'PID':<8} {'STATUS':<10} BUNDLE")
        for i in items:
            print(f"{i['id']:<24} {i.get('pid', 0):<8} {i['status']:<10} {i['bundle']}")


def _spec(a: Args) -> None:
    from .spec import default_spec
    if a.get("rootless"):
        raise VerbError("--rootless is not supported")
    path = os.path.join(a.str("bundle", "."), "config.json")
    if os.path.exists(path):
        raise VerbError(f"File {path} exists. Remove it first")
    with open(path, "w") as f:
        json.dump(default_spec(), f, indent=2)


def main(argv: list[str] | None = None) -> None:
    a: Args | None = None
    try:
        a = parse(sys.argv[1:] if argv is None else argv)
        code = _dispatch(a)
    except OciError as e:
        _log_error(a, str(e))
        code = 1
    except OSError as e:
        _log_error(a, f"{e.strerror or e}" + (f": {e.filename}" if e.filename else ""))
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    main()

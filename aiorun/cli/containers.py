"""Container verbs: run, create, start, ps, logs, stop, kill, restart, rm, wait, rename, top,
inspect and ``container SUBCOMMAND``.

A thin client of the daemon's Docker-shaped API. This module is on ``aiorun run``'s hot path:
it imports only json/os/sys/signal/struct/threading at load time (no argparse, anyio or h11);
option parsing is a small docker-style parser (``-it``, ``-e K=V``, ``--name=x``, repeatable
flags, options end at the first positional for run/create/exec).

Exit codes of ``run``: the container's; 125 when the engine refused (bad flag, unknown image,
...); 126 / 127 when the command could not be executed / was not found — as Docker.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import sys
import threading

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs ~3 ms of every CLI start
    from typing import Any, Callable, Iterator

# --------------------------------------------------------------------------- option parsing

BOOL, STR, LIST = "bool", "str", "list"


class UsageError(Exception):
    pass


class Opts(dict):
    def __getattr__(self, k: str) -> Any:
        return self.get(k)


def parse_opts(spec: dict[str, tuple[str, str]], argv: list[str],
               interspersed: bool = True) -> tuple[Opts, list[str]]:
    """``spec`` maps every flag spelling ("-e", "--env") to (dest, kind)."""
    opts = Opts()
    for dest, kind in spec.values():
        opts.setdefault(dest, [] if kind == LIST else (False if kind == BOOL else None))
    rest: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            rest += argv[i + 1:]
            break
        if a.startswith("--") and len(a) > 2:
            name, eq, val = a.partition("=")
            if name not in spec:
                raise UsageError(f"unknown flag: {name}")
            dest, kind = spec[name]
            if kind == BOOL:
                opts[dest] = (val.lower() not in ("false", "0")) if eq else True
            else:
                if not eq:
                    i += 1
                    if i >= len(argv):
                        raise UsageError(f"flag needs an argument: {name}")
                    val = argv[i]
                _set(opts, dest, kind, val)
        elif a.startswith("-") and len(a) > 1 and not _is_number(a):
            j = 1
            while j < len(a):
                flag = "-" + a[j]
                if flag not in spec:
                    raise UsageError(f"unknown shorthand flag: {a[j]!r} in {a}")
                dest, kind = spec[flag]
                if kind == BOOL:
                    opts[dest] = True
                    j += 1
                    continue
                val = a[j + 1:]
                if val.startswith("="):
                    val = val[1:]
                if not val:
                    i += 1
                    if i >= len(argv):
                        raise UsageError(f"flag needs an argument: '{a[j]}' in {flag}")
                    val = argv[i]
                _set(opts, dest, kind, val)
                break
        else:
            if not interspersed:
                rest += argv[i:]
                break
            rest.append(a)
        i += 1
    return opts, rest


def _is_number(a: str) -> bool:
    return a[1:].isdigit()


def _set(opts: Opts, dest: str, kind: str, val: str) -> None:
    if kind == LIST:
        opts[dest].append(val)
    else:
        opts[dest] = val


def _flags(*entries: tuple[str, str, str]) -> dict[str, tuple[str, str]]:
    """("-e --env", "env", LIST) → {"-e": ("env", LIST), "--env": (...)}"""
    out = {}
    for names, dest, kind in entries:
        for n in names.split():
            out[n] = (dest, kind)
    return out


def _err(msg: str) -> None:
    sys.stderr.write(msg.rstrip("\n") + "\n")


def _usage_fail(verb: str, exc: Exception, code: int = 125) -> int:
    _err(f"aiorun {verb}: {exc}\nSee 'aiorun {verb} --help'.")
    return code


def _api_error(exc: Exception) -> str:
    return f"Error response from daemon: {getattr(exc, 'message', str(exc))}"


# --------------------------------------------------------------------------- create body

CREATE_FLAGS = _flags(
    ("-d --detach", "detach", BOOL), ("--rm", "rm", BOOL), ("-i --interactive", "interactive", BOOL),
    ("-t --tty", "tty", BOOL), ("--name", "name", STR), ("-e --env", "env", LIST),
    ("--env-file", "env_file", LIST), ("-w --workdir", "workdir", STR), ("-u --user", "user", STR),
    ("-h --hostname", "hostname", STR), ("--entrypoint", "entrypoint", STR),
    ("-m --memory", "memory", STR), ("--memory-swap", "memory_swap", STR),
    ("--cpus", "cpus", STR), ("-c --cpu-shares", "cpu_shares", STR),
    ("--pids-limit", "pids_limit", STR), ("--restart", "restart", STR),
    ("-p --publish", "publish", LIST), ("-P --publish-all", "publish_all", BOOL),
    ("--expose", "expose", LIST), ("--network --net", "network", STR),
    ("--network-alias --net-alias", "network_alias", LIST), ("--ip", "ip", STR),
    ("--mac-address", "mac_address", STR),
    ("-v --volume", "volume", LIST), ("--mount", "mount", LIST), ("--tmpfs", "tmpfs", LIST),
    ("--privileged", "privileged", BOOL), ("--cap-add", "cap_add", LIST),
    ("--cap-drop", "cap_drop", LIST), ("--cgroup-parent", "cgroup_parent", STR),
    ("--read-only", "read_only", BOOL), ("-l --label", "label", LIST),
    ("--stop-signal", "stop_signal", STR), ("--stop-timeout", "stop_timeout", STR),
    ("--dns", "dns", LIST), ("--add-host", "add_host", LIST), ("--init", "init", BOOL),
    ("-a --attach", "attach", LIST), ("--sig-proxy", "sig_proxy", BOOL),
    ("--pull", "pull", STR), ("--platform", "platform", STR), ("--help", "help", BOOL),
    ("-q --quiet", "quiet", BOOL),
)

RUN_USAGE = """Usage:  aiorun run [OPTIONS] IMAGE [COMMAND] [ARG...]

Create and run a new container from an image

Options:
  -d, --detach             Run in the background and print the container ID
      --rm                 Remove the container when it exits
  -i, --interactive        Keep STDIN open
  -t, --tty                Allocate a pseudo-TTY
      --name NAME          Assign a name
  -e, --env K=V            Set environment variables (repeatable); --env-file FILE
  -w, --workdir DIR        Working directory inside the container
  -u, --user USER[:GROUP]  User
  -h, --hostname NAME      Hostname (default: the first 12 characters of the ID)
      --entrypoint CMD     Override the image's ENTRYPOINT
  -m, --memory SIZE        Memory limit (e.g. 512m, 1g)
      --cpus N             CPU quota in cores; --pids-limit N; --cgroup-parent PATH
      --restart POLICY     no | on-failure[:N] | always | unless-stopped
  -p, --publish SPEC       Publish a port ([IP:][HOST:]CPORT[/PROTO]); -P publishes all
      --network NET        bridge (default), none, host or a network name
  -v, --volume SPEC        Bind mount or volume; --mount SPEC; --tmpfs DIR
      --privileged         Lift the security defaults; --cap-add/--cap-drop CAP
      --read-only          Read-only root filesystem
  -l, --label K=V          Label
"""


def _env_files(files: list[str]) -> list[str]:
    out = []
    for f in files:
        try:
            with open(f) as fh:
                lines = fh.read().splitlines()
        except OSError as exc:
            raise UsageError(f"open {f}: {exc.strerror}") from None
        for line in lines:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            out.append(line)
    return out


def _env_values(items: list[str]) -> list[str]:
    """Docker's CLI: "K" alone takes K from the local environment (dropped when unset)."""
    out = []
    for e in items:
        k, eq, _ = e.partition("=")
        if not k:
            raise UsageError(f"invalid environment variable: {e}")
        if eq:
            out.append(e)
        elif k in os.environ:
            out.append(f"{k}={os.environ[k]}")
    return out


def build_create(opts: Opts, rest: list[str]) -> tuple[dict[str, Any], str | None]:
    """(create body, name) from run/create flags. UsageError / InvalidArgument on bad input."""
    if opts.memory or opts.memory_swap or opts.cpus or opts.restart:
        # Only then: aiorun.core.spec pulls in dataclasses/inspect (~10 ms of a plain `run`).
        from aiorun.core import spec as cspec
    if not rest:
        raise UsageError('"run" requires at least 1 argument: IMAGE [COMMAND] [ARG...]')
    image, cmd = rest[0], rest[1:]
    body: dict[str, Any] = {"Image": image}
    if cmd:
        body["Cmd"] = cmd
    if opts.entrypoint is not None:
        body["Entrypoint"] = [opts.entrypoint] if opts.entrypoint else [""]
    env = _env_values(_env_files(opts.env_file) + opts.env)
    if env:
        body["Env"] = env
    for key, val in (("WorkingDir", opts.workdir), ("User", opts.user),
                     ("Hostname", opts.hostname), ("StopSignal", opts.stop_signal)):
        if val:
            body[key] = val
    if opts.stop_timeout is not None:
        body["StopTimeout"] = _int(opts.stop_timeout, "--stop-timeout")
    attached = not opts.detach
    body.update({"Tty": opts.tty, "OpenStdin": opts.interactive,
                 "StdinOnce": opts.interactive and attached,
                 "AttachStdin": opts.interactive and attached,
                 "AttachStdout": attached, "AttachStderr": attached})
    labels = {}
    for item in opts.label:
        k, _, v = item.partition("=")
        labels[k] = v
    if labels:
        body["Labels"] = labels
    hc: dict[str, Any] = {}
    if opts.memory:
        try:
            hc["Memory"] = cspec.parse_memory(opts.memory)
        except Exception as exc:
            raise UsageError(f'invalid argument "{opts.memory}" for "-m, --memory" flag: '
                             f'{getattr(exc, "message", exc)}') from None
    if opts.memory_swap:
        hc["MemorySwap"] = -1 if opts.memory_swap == "-1" else cspec.parse_memory(opts.memory_swap)
    if opts.cpus:
        try:
            hc["NanoCpus"] = cspec.parse_cpus(opts.cpus)
        except Exception:
            raise UsageError(f'invalid argument "{opts.cpus}" for "--cpus" flag: failed to '
                             f'parse {opts.cpus} as a rational number') from None
    if opts.cpu_shares:
        hc["CpuShares"] = _int(opts.cpu_shares, "--cpu-shares")
    if opts.pids_limit:
        hc["PidsLimit"] = _int(opts.pids_limit, "--pids-limit")
    if opts.restart:
        try:
            hc["RestartPolicy"] = cspec.parse_restart_policy(opts.restart)
        except Exception as exc:
            raise UsageError(getattr(exc, "message", str(exc))) from None
    if opts.rm:
        hc["AutoRemove"] = True
    if opts.network:
        hc["NetworkMode"] = opts.network
    if opts.network_alias or opts.ip or opts.mac_address:
        ep: dict[str, Any] = {}
        if opts.network_alias:
            ep["Aliases"] = list(opts.network_alias)
        if opts.ip:
            ep["IPAMConfig"] = {"IPv4Address": opts.ip}
        if opts.mac_address:
            ep["MacAddress"] = opts.mac_address
        body["NetworkingConfig"] = {"EndpointsConfig": {opts.network or "bridge": ep}}
    if opts.publish or opts.expose:
        from aiorun.core import ports
        maps = []
        for p in opts.publish:
            maps += ports.parse_publish(p)
        if maps:
            hc["PortBindings"] = ports.to_port_bindings(maps)
        exposed = {}
        for e in opts.expose:
            for k in ports.parse_expose(e):
                exposed[k] = {}
        for k in hc.get("PortBindings", {}):
            exposed[k] = {}
        if exposed:
            body["ExposedPorts"] = exposed
    if opts.publish_all:
        hc["PublishAllPorts"] = True
    if opts.volume:
        hc["Binds"] = list(opts.volume)
    if opts.mount or opts.tmpfs:
        from aiorun.core import mounts
        hc["Mounts"] = [mounts.parse_mount_flag(m) for m in opts.mount] + \
                       [mounts.parse_tmpfs_flag(t) for t in opts.tmpfs]
    if opts.privileged:
        hc["Privileged"] = True
    if opts.cap_add:
        hc["CapAdd"] = list(opts.cap_add)
    if opts.cap_drop:
        hc["CapDrop"] = list(opts.cap_drop)
    if opts.cgroup_parent:
        hc["CgroupParent"] = opts.cgroup_parent
    if opts.read_only:
        hc["ReadonlyRootfs"] = True
    if opts.dns:
        hc["Dns"] = list(opts.dns)
    if opts.add_host:
        hc["ExtraHosts"] = list(opts.add_host)
    if opts.init:
        hc["Init"] = True
    body["HostConfig"] = hc
    if opts.name is not None and not opts.name:
        raise UsageError("invalid empty container name")
    return body, opts.name


def call(client: Any, method: str, path: str, body: Any = None, **query: Any) -> Any:
    """One API call; the JSON body or None. 204/304 answers carry no body (and, with
    keep-alive, no Content-Length either: never read them until close)."""
    r = client.request(method, path, query, body)
    try:
        if r.status in (204, 304) or (r.status < 200):
            return None
        return r.json()
    finally:
        r.close()


def _int(v: str, flag: str) -> int:
    try:
        return int(v)
    except ValueError:
        raise UsageError(f'invalid argument "{v}" for "{flag}" flag: not an integer') from None


def start_error_code(message: str) -> int:
    m = message.lower()
    if "not found" in m or "no such file" in m:
        return 127
    if "permission denied" in m or "not executable" in m or "exec format" in m:
        return 126
    return 125


# --------------------------------------------------------------------------- streams

def _raw_stream(resp: Any) -> tuple[Any, bytes]:
    """The socket of a hijacked response and the bytes already read past its head."""
    buf = bytes(resp._buf)
    resp._buf.clear()
    return resp.sock, buf


def _received(sock: Any, first: bytes) -> Iterator[bytes]:
    """``first``, then what arrives on ``sock``, until the daemon closes it."""
    if first:
        yield first
    while True:
        try:
            data = sock.recv(65536)
        except OSError:
            return
        if not data:
            return
        yield data


def _copy_output(sock: Any, first: bytes, tty: bool,
                 out: Any = None, err: Any = None) -> None:
    """Copy an attach/exec stream to stdout/stderr until the daemon closes it.

    A TTY stream is raw; otherwise it is Docker's multiplexed frames
    ``[stream, 0, 0, 0, uint32 BE length] + payload`` (1 stdout, 2 stderr).
    """
    out = out or sys.stdout.buffer
    err = err or sys.stderr.buffer
    if tty:
        for data in _received(sock, first):
            out.write(data)
            out.flush()
        return
    buf = bytearray()
    for data in _received(sock, first):
        buf += data
        while len(buf) >= 8:
            stream, n = struct.unpack(">BxxxL", bytes(buf[:8]))
            if len(buf) < 8 + n:
                break
            payload = bytes(buf[8:8 + n])
            del buf[:8 + n]
            target = err if stream == 2 else out
            target.write(payload)
            target.flush()


def _pump_stdin(sock: Any) -> threading.Thread:
    def run() -> None:
        fd = sys.stdin.fileno()
        try:
            while True:
                data = os.read(fd, 65536)
                if not data:
                    break
                sock.sendall(data)
        except OSError:
            pass
        try:
            import socket as _s
            sock.shutdown(_s.SHUT_WR)
        except OSError:
            pass
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


class _RawTerminal:
    """Put the local terminal in raw mode for ``-t`` with a terminal on stdin."""

    def __init__(self) -> None:
        self.saved = None

    def __enter__(self) -> "_RawTerminal":
        if sys.stdin.isatty():
            import termios
            import tty
            fd = sys.stdin.fileno()
            self.saved = termios.tcgetattr(fd)
            tty.setraw(fd)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.saved is not None:
            import termios
            termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, self.saved)


def _term_size() -> tuple[int, int] | None:
    try:
        sz = os.get_terminal_size(sys.stdout.fileno())
        return sz.lines, sz.columns
    except OSError:
        return None


def _resize(client: Any, path: str) -> None:
    size = _term_size()
    if size:
        try:
            call(client, "POST", path, h=size[0], w=size[1])
        except Exception:
            pass


FORWARDED_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2")


def _forward_signals(client: Any, cid: str) -> Callable[[], None]:
    """Forward signals to the container through the kill API; returns a restore function."""
    old: dict[int, Any] = {}

    def handler(signum: int, _frame: Any) -> None:
        name = signal.Signals(signum).name
        threading.Thread(target=lambda: _kill_quiet(client, cid, name), daemon=True).start()
    for name in FORWARDED_SIGNALS:
        s = getattr(signal, name)
        try:
            old[s] = signal.signal(s, handler)
        except (ValueError, OSError):
            pass

    def restore() -> None:
        for s, h in old.items():
            try:
                signal.signal(s, h)
            except (ValueError, OSError):
                pass
    return restore


def _kill_quiet(client: Any, cid: str, sig: str) -> None:
    try:
        call(client, "POST", f"/containers/{cid}/kill", signal=sig)
    except Exception:
        pass


# --------------------------------------------------------------------------- run / create / start

def cmd_run(ctx: Any, argv: list[str]) -> int:
    try:
        opts, rest = parse_opts(CREATE_FLAGS, argv, interspersed=False)
        if opts.help:
            sys.stdout.write(RUN_USAGE)
            return 0
        body, name = build_create(opts, rest)
    except UsageError as exc:
        return _usage_fail("run", exc)
    except Exception as exc:           # InvalidArgument from the pure parsers
        return _usage_fail("run", getattr(exc, "message", exc))
    from aiorun.api.client import ApiError
    client = ctx.client()
    cid = call(client, "POST", "/containers/create", body, name=name)["Id"]
    if opts.detach:
        try:
            call(client, "POST", f"/containers/{cid}/start")
        except ApiError as exc:
            _err(_api_error(exc))
            return start_error_code(exc.message)
        sys.stdout.write(cid + "\n")
        return 0
    return _run_attached(client, cid, opts.tty, opts.interactive, bool(opts.rm))


def _run_attached(client: Any, cid: str, tty: bool, interactive: bool, auto_remove: bool,
                  start: bool = True) -> int:
    from aiorun.api.client import ApiError
    attach = client.request("POST", f"/containers/{cid}/attach",
                            {"stream": True, "stdout": True, "stderr": True,
                             "stdin": interactive}, upgrade=True)
    sock, first = _raw_stream(attach)
    waiter = client.request("POST", f"/containers/{cid}/wait",
                            {"condition": "removed" if auto_remove else "next-exit"})
    restore = (lambda: None) if tty and sys.stdin.isatty() else _forward_signals(client, cid)
    try:
        if start:
            try:
                call(client, "POST", f"/containers/{cid}/start")
            except ApiError as exc:
                sock.close()
                waiter.close()
                _err(_api_error(exc))
                return start_error_code(exc.message)
        with _RawTerminal() if tty and interactive else _Null():
            if tty:
                _resize(client, f"/containers/{cid}/resize")
                _on_winch(lambda: _resize(client, f"/containers/{cid}/resize"))
            if interactive:
                _pump_stdin(sock)
            _copy_output(sock, first, tty)
        sock.close()
        try:
            result = waiter.json() or {}
        except (ConnectionError, ValueError):
            result = {}
        finally:
            waiter.close()
        err = (result.get("Error") or {}).get("Message") if isinstance(result.get("Error"),
                                                                         dict) else None
        if err and start:
            _err(err)
        return int(result.get("StatusCode", 125))
    finally:
        restore()


class _Null:
    def __enter__(self) -> "_Null":
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


def _on_winch(fn: Callable[[], None]) -> None:
    try:
        signal.signal(signal.SIGWINCH, lambda *_: threading.Thread(target=fn, daemon=True).start())
    except (ValueError, OSError):
        pass


def cmd_create(ctx: Any, argv: list[str]) -> int:
    try:
        opts, rest = parse_opts(CREATE_FLAGS, argv, interspersed=False)
        if opts.help:
            sys.stdout.write(RUN_USAGE.replace("aiorun run", "aiorun create"))
            return 0
        opts["detach"] = True
        body, name = build_create(opts, rest)
    except UsageError as exc:
        return _usage_fail("create", exc)
    except Exception as exc:
        return _usage_fail("create", getattr(exc, "message", exc))
    cid = call(ctx.client(), "POST", "/containers/create", body, name=name)["Id"]
    sys.stdout.write(cid + "\n")
    return 0


def cmd_start(ctx: Any, argv: list[str]) -> int:
    try:
        opts, refs = parse_opts(_flags(("-a --attach", "attach", BOOL),
                                       ("-i --interactive", "interactive", BOOL)), argv)
    except UsageError as exc:
        return _usage_fail("start", exc, 1)
    if not refs:
        return _usage_fail("start", "requires at least 1 argument", 1)
    from aiorun.api.client import ApiError
    client = ctx.client()
    if opts.attach:
        if len(refs) > 1:
            return _usage_fail("start", "you cannot start and attach multiple containers "
                                        "at once", 1)
        info = client.get(f"/containers/{refs[0]}/json")
        return _run_attached(client, info["Id"], bool(info["Config"].get("Tty")),
                             bool(opts.interactive), False)
    rc = 0
    for ref in refs:
        try:
            r = client.request("POST", f"/containers/{ref}/start")
            status = r.status
            r.close()
            if status == 304:
                _err(f"Error response from daemon: container {ref} is already running")
                rc = 1
                continue
            sys.stdout.write(ref + "\n")
        except ApiError as exc:
            _err(_api_error(exc))
            _err(f"Error: failed to start containers: {ref}")
            rc = 1
    return rc


# --------------------------------------------------------------------------- ps

PS_HEADERS = {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND",
              "CreatedAt": "CREATED AT", "RunningFor": "CREATED", "Status": "STATUS",
              "Ports": "PORTS", "Names": "NAMES", "State": "STATE", "Labels": "LABELS",
              "Mounts": "MOUNTS", "Networks": "NETWORKS", "Size": "SIZE"}
PS_DEFAULT = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"


def _ellipsis(s: str, n: int) -> str:
    return s if len(s) <= n else s[:n - 1] + "…"


def ps_row(c: dict[str, Any], no_trunc: bool, now: float | None = None) -> dict[str, Any]:
    from aiorun.core.state import human_duration
    import time
    now = now or time.time()
    cmd = c.get("Command", "")
    ports = ""
    if c.get("Ports"):
        try:
            from aiorun.core.ports import format_ports
            ports = format_ports(c["Ports"])
        except Exception:
            ports = ""
    image = c.get("Image", "")
    if image.startswith("sha256:") and not no_trunc:
        image = image[7:19]
    labels = c.get("Labels") or {}
    return {
        "ID": c["Id"] if no_trunc else c["Id"][:12],
        "Image": image,
        "Command": json.dumps(cmd if no_trunc else _ellipsis(cmd, 20), ensure_ascii=False),
        "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S %z %Z", time.localtime(c["Created"])),
        "RunningFor": human_duration(now - c["Created"]) + " ago",
        "Status": c.get("Status", ""),
        "State": c.get("State", ""),
        "Ports": ports,
        "Names": ",".join(n.lstrip("/") for n in c.get("Names") or []),
        "Labels": ",".join(f"{k}={v}" for k, v in labels.items()),
        "Mounts": ",".join(m.get("Name") or m.get("Source", "") for m in c.get("Mounts") or []),
        "Networks": ",".join(sorted((c.get("NetworkSettings") or {}).get("Networks") or {})),
        "Size": "",
    }


def _filter_arg(items: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for it in items:
        k, eq, v = it.partition("=")
        if not eq:
            raise UsageError(f"bad format of filter (expected name=value): {it}")
        out.setdefault(k, []).append(v)
    return out


def cmd_ps(ctx: Any, argv: list[str]) -> int:
    try:
        opts, rest = parse_opts(_flags(("-a --all", "all", BOOL), ("-q --quiet", "quiet", BOOL),
                                       ("--no-trunc", "no_trunc", BOOL),
                                       ("-f --filter", "filter", LIST),
                                       ("--format", "format", STR), ("-n --last", "last", STR),
                                       ("-l --latest", "latest", BOOL),
                                       ("-s --size", "size", BOOL)), argv)
        if rest:
            raise UsageError(f"unexpected argument {rest[0]!r}")
        filters = _filter_arg(opts.filter)
    except UsageError as exc:
        return _usage_fail("ps", exc, 1)
    q: dict[str, Any] = {"all": opts.all or None}
    if filters:
        q["filters"] = filters
    if opts.latest:
        q["limit"] = 1
    elif opts.last:
        q["limit"] = _int(opts.last, "--last")
    rows = ctx.client().get("/containers/json", **q) or []
    if opts.quiet:
        sys.stdout.write("".join((c["Id"] if opts.no_trunc else c["Id"][:12]) + "\n"
                                 for c in rows))
        return 0
    from aiorun.core.templates import render_table
    fmt = opts.format or PS_DEFAULT
    if fmt == "json":
        fmt = "{{json .}}"
    sys.stdout.write(render_table(fmt, [ps_row(c, opts.no_trunc) for c in rows], PS_HEADERS))
    return 0


# --------------------------------------------------------------------------- logs

def cmd_logs(ctx: Any, argv: list[str]) -> int:
    try:
        opts, rest = parse_opts(_flags(("-f --follow", "follow", BOOL), ("-n --tail", "tail", STR),
                                       ("-t --timestamps", "timestamps", BOOL),
                                       ("--since", "since", STR), ("--until", "until", STR),
                                       ("--details", "details", BOOL)), argv)
        if len(rest) != 1:
            raise UsageError('"logs" requires exactly 1 argument')
    except UsageError as exc:
        return _usage_fail("logs", exc, 1)
    client = ctx.client()
    info = client.get(f"/containers/{rest[0]}/json")
    q = {"stdout": True, "stderr": True, "follow": opts.follow or None,
         "timestamps": opts.timestamps or None, "tail": opts.tail,
         "since": _since(opts.since), "until": _since(opts.until)}
    resp = client.request("GET", f"/containers/{info['Id']}/logs", q)
    tty = bool(info["Config"].get("Tty"))
    restore = _quiet_sigint()
    try:
        buf = bytearray()
        for chunk in resp.iter_chunks():
            if tty:
                sys.stdout.buffer.write(chunk)
                sys.stdout.buffer.flush()
                continue
            buf += chunk
            while len(buf) >= 8:
                stream, n = struct.unpack(">BxxxL", bytes(buf[:8]))
                if len(buf) < 8 + n:
                    break
                target = sys.stderr.buffer if stream == 2 else sys.stdout.buffer
                target.write(bytes(buf[8:8 + n]))
                target.flush()
                del buf[:8 + n]
    except KeyboardInterrupt:
        return 0
    finally:
        restore()
        resp.close()
    return 0


def _quiet_sigint() -> Callable[[], None]:
    return lambda: None


def _since(v: str | None) -> str | None:
    """Docker accepts RFC3339, unix seconds, or a relative duration like "10m"."""
    if not v:
        return None
    import re
    import time
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)", v)
    if m:
        mult = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]
        return f"{time.time() - float(m.group(1)) * mult:.9f}"
    return v


# --------------------------------------------------------------------------- simple verbs

def _each(ctx: Any, verb: str, refs: list[str], fn: Callable[[Any, str], Any],
          echo: bool = True) -> int:
    if not refs:
        return _usage_fail(verb, f'"{verb}" requires at least 1 argument', 1)
    from aiorun.api.client import ApiError
    client = ctx.client()
    rc = 0
    for ref in refs:
        try:
            fn(client, ref)
            if echo:
                sys.stdout.write(ref + "\n")
        except ApiError as exc:
            _err(_api_error(exc))
            rc = 1
    return rc


def cmd_stop(ctx: Any, argv: list[str]) -> int:
    try:
        opts, refs = parse_opts(_flags(("-t --time --timeout", "time", STR),
                                       ("-s --signal", "signal", STR)), argv)
    except UsageError as exc:
        return _usage_fail("stop", exc, 1)

    def stop(client: Any, ref: str) -> None:
        r = client.request("POST", f"/containers/{ref}/stop",
                           {"t": opts.time, "signal": opts.signal})
        r.close()
    return _each(ctx, "stop", refs, stop)


def cmd_kill(ctx: Any, argv: list[str]) -> int:
    try:
        opts, refs = parse_opts(_flags(("-s --signal", "signal", STR)), argv)
    except UsageError as exc:
        return _usage_fail("kill", exc, 1)
    return _each(ctx, "kill", refs, lambda cl, ref: call(cl, "POST", f"/containers/{ref}/kill",
                                                             signal=opts.signal or "KILL"))


def cmd_restart(ctx: Any, argv: list[str]) -> int:
    try:
        opts, refs = parse_opts(_flags(("-t --time --timeout", "time", STR)), argv)
    except UsageError as exc:
        return _usage_fail("restart", exc, 1)
    return _each(ctx, "restart", refs,
                 lambda cl, ref: call(cl, "POST", f"/containers/{ref}/restart", t=opts.time))


def cmd_rm(ctx: Any, argv: list[str]) -> int:
    try:
        opts, refs = parse_opts(_flags(("-f --force", "force", BOOL),
                                       ("-v --volumes", "volumes", BOOL),
                                       ("-l --link", "link", BOOL)), argv)
    except UsageError as exc:
        return _usage_fail("rm", exc, 1)
    return _each(ctx, "rm", refs, lambda cl, ref: call(
        cl, "DELETE", f"/containers/{ref}", force=opts.force or None, v=opts.volumes or None))


def cmd_wait(ctx: Any, argv: list[str]) -> int:
    try:
        _opts, refs = parse_opts({}, argv)
    except UsageError as exc:
        return _usage_fail("wait", exc, 1)

    def wait(cl: Any, ref: str) -> None:
        res = call(cl, "POST", f"/containers/{ref}/wait", condition="not-running") or {}
        sys.stdout.write(f"{res.get('StatusCode', -1)}\n")
    return _each(ctx, "wait", refs, wait, echo=False)


def cmd_update(ctx: Any, argv: list[str]) -> int:
    """``aiorun container update [--memory M] [--cpus C] [--pids-limit N] [--restart P] C...``"""
    from aiorun.core import spec as cspec
    try:
        opts, refs = parse_opts(_flags(("-m --memory", "memory", STR),
                                       ("--memory-swap", "memory_swap", STR),
                                       ("--cpus", "cpus", STR), ("-c --cpu-shares", "shares", STR),
                                       ("--pids-limit", "pids", STR),
                                       ("--restart", "restart", STR)), argv)
        body: dict[str, Any] = {}
        if opts.memory:
            body["Memory"] = cspec.parse_memory(opts.memory)
        if opts.memory_swap:
            body["MemorySwap"] = -1 if opts.memory_swap == "-1" else \
                cspec.parse_memory(opts.memory_swap)
        if opts.cpus:
            body["NanoCpus"] = cspec.parse_cpus(opts.cpus)
        if opts.shares:
            body["CpuShares"] = _int(opts.shares, "--cpu-shares")
        if opts.pids:
            body["PidsLimit"] = _int(opts.pids, "--pids-limit")
        if opts.restart:
            body["RestartPolicy"] = cspec.parse_restart_policy(opts.restart)
    except UsageError as exc:
        return _usage_fail("update", exc, 1)
    except Exception as exc:
        return _usage_fail("update", getattr(exc, "message", exc), 1)
    return _each(ctx, "update", refs,
                 lambda cl, ref: call(cl, "POST", f"/containers/{ref}/update", body))


def cmd_attach(ctx: Any, argv: list[str]) -> int:
    """``aiorun container attach [--no-stdin] C``: stream a running container's output (and
    feed it stdin when it was started with -i) until it exits; its exit code."""
    try:
        opts, refs = parse_opts(_flags(("--no-stdin", "no_stdin", BOOL),
                                       ("--sig-proxy", "sig_proxy", BOOL)), argv)
        if len(refs) != 1:
            raise UsageError('"attach" requires exactly 1 argument')
    except UsageError as exc:
        return _usage_fail("attach", exc, 1)
    client = ctx.client()
    info = client.get(f"/containers/{refs[0]}/json")
    if not info["State"]["Running"]:
        _err("You cannot attach to a stopped container, start it first")
        return 1
    cfg = info["Config"]
    return _run_attached(client, info["Id"], bool(cfg.get("Tty")),
                         bool(cfg.get("OpenStdin")) and not opts.no_stdin, False, start=False)


def cmd_pause(ctx: Any, argv: list[str]) -> int:
    return _each(ctx, "pause", argv, lambda cl, ref: call(cl, "POST", f"/containers/{ref}/pause"))


def cmd_unpause(ctx: Any, argv: list[str]) -> int:
    return _each(ctx, "unpause", argv,
                 lambda cl, ref: call(cl, "POST", f"/containers/{ref}/unpause"))


def cmd_rename(ctx: Any, argv: list[str]) -> int:
    if len(argv) != 2:
        return _usage_fail("rename", '"rename" requires exactly 2 arguments: CONTAINER NEW_NAME', 1)
    call(ctx.client(), "POST", f"/containers/{argv[0]}/rename", name=argv[1])
    return 0


def cmd_top(ctx: Any, argv: list[str]) -> int:
    if not argv:
        return _usage_fail("top", '"top" requires at least 1 argument', 1)
    res = ctx.client().get(f"/containers/{argv[0]}/top")
    from aiorun.core.templates import tabwrite
    lines = ["\t".join(res["Titles"])] + ["\t".join(p) for p in res["Processes"]]
    sys.stdout.write(tabwrite(lines, minwidth=0, padding=4))
    return 0


def cmd_prune(ctx: Any, argv: list[str]) -> int:
    try:
        opts, rest = parse_opts(_flags(("-f --force", "force", BOOL),
                                       ("--filter", "filter", LIST)), argv)
        filters = _filter_arg(opts.filter)
    except UsageError as exc:
        return _usage_fail("container prune", exc, 1)
    if not opts.force and sys.stdin.isatty():
        sys.stdout.write("WARNING! This will remove all stopped containers.\n"
                         "Are you sure you want to continue? [y/N] ")
        sys.stdout.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return 0
    res = call(ctx.client(), "POST", "/containers/prune", filters=filters or None) or {}
    deleted = res.get("ContainersDeleted") or []
    if deleted:
        sys.stdout.write("Deleted Containers:\n" + "".join(d + "\n" for d in deleted) + "\n")
    sys.stdout.write(f"Total reclaimed space: {_human_size(res.get('SpaceReclaimed', 0))}\n")
    return 0


def _human_size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000:
            return f"{n:.4g}{unit}"
        n /= 1000
    return f"{n:.4g}PB"


# --------------------------------------------------------------------------- inspect

def cmd_inspect(ctx: Any, argv: list[str], kind: str | None = None) -> int:
    try:
        opts, refs = parse_opts(_flags(("-f --format", "format", STR), ("--type", "type", STR),
                                       ("-s --size", "size", BOOL)), argv)
        if not refs:
            raise UsageError('"inspect" requires at least 1 argument')
    except UsageError as exc:
        return _usage_fail("inspect", exc, 1)
    from aiorun.api.client import ApiError
    from urllib.parse import quote
    kind = kind or opts.type
    client = ctx.client()
    results, rc = [], 0
    for ref in refs:
        obj = None
        reported = False
        kinds = [kind] if kind else ["container", "image", "volume", "network"]
        for k in kinds:
            path = {"container": f"/containers/{quote(ref, safe='')}/json",
                    "image": f"/images/{ref}/json",
                    "volume": f"/volumes/{quote(ref, safe='')}",
                    "network": f"/networks/{quote(ref, safe='')}"}.get(k)
            if path is None:
                return _usage_fail("inspect", f'"{k}" is not a valid value for --type', 1)
            try:
                obj = client.get(path)
                break
            except ApiError as exc:
                if exc.status not in (404, 405):
                    _err(_api_error(exc))
                    reported = True
                    break
        if obj is None:
            if not reported:
                _err(f"Error: No such {kind or 'object'}: {ref}")
            rc = 1
            continue
        results.append(obj)
    if opts.format:
        from aiorun.core.templates import Template
        tpl = Template(opts.format)
        for obj in results:
            sys.stdout.write(tpl.render(obj) + "\n")
    else:
        sys.stdout.write(json.dumps(results, indent=4) + "\n")
    return rc


# --------------------------------------------------------------------------- container group

CONTAINER_USAGE = """Usage:  aiorun container COMMAND

Manage containers

Commands:
  attach  create  inspect  kill  logs  ls  pause  prune  rename  restart  rm  run  start  stop  top
  unpause  update  wait  exec
"""


def cmd_container(ctx: Any, argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        sys.stdout.write(CONTAINER_USAGE)
        return 0 if argv else 1
    sub, rest = argv[0], argv[1:]
    table: dict[str, Callable[[Any, list[str]], int]] = {
        "ls": cmd_ps, "list": cmd_ps, "ps": cmd_ps, "run": cmd_run, "create": cmd_create,
        "start": cmd_start, "stop": cmd_stop, "kill": cmd_kill, "restart": cmd_restart,
        "rm": cmd_rm, "remove": cmd_rm, "wait": cmd_wait, "rename": cmd_rename,
        "top": cmd_top, "logs": cmd_logs, "prune": cmd_prune, "pause": cmd_pause,
        "unpause": cmd_unpause, "update": cmd_update, "attach": cmd_attach,
        "inspect": lambda c, a: cmd_inspect(c, a, "container"),
    }
    if sub == "exec":
        from aiorun.cli.exec import cmd_exec
        return cmd_exec(ctx, rest)
    fn = table.get(sub)
    if fn is None:
        _err(f"aiorun container: unknown command {sub!r}\nSee 'aiorun container --help'.")
        return 1
    return fn(ctx, rest)

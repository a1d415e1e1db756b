"""``aiorun`` command line entry point.

A thin client of the daemon's API. Verbs are looked up in ``VERBS`` and their module is
imported only when used, so the hot verbs (run, exec, ps) stay on a lean import path.
Each verb function takes ``(ctx, argv)`` and returns the process exit code.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs ~3 ms of every CLI start
    from aiorun.api.client import Client
    from aiorun.config import Paths

# verb -> "module:function" (module relative to aiorun.cli)
VERBS: dict[str, str] = {
    # daemon
    "serve": "daemon:cmd_serve",
    "info": "system:cmd_info",
    "version": "system:cmd_version",
    "system": "system:cmd_system",
    # images (issue 2)
    "import": "images:cmd_import",
    "images": "images:cmd_images",
    "image": "images:cmd_image",
    "tag": "images:cmd_tag",
    "rmi": "images:cmd_rmi",
    "history": "images:cmd_history",
    "save": "images:cmd_save",
    "load": "images:cmd_load",
    "pull": "pull:cmd_pull",
    "build": "build:cmd_build",
    # containers (issue 3)
    "run": "containers:cmd_run",
    "create": "containers:cmd_create",
    "start": "containers:cmd_start",
    "ps": "listing:cmd_ps",
    "logs": "listing:cmd_logs",
    "stop": "lifecycle:cmd_stop",
    "kill": "lifecycle:cmd_kill",
    "restart": "lifecycle:cmd_restart",
    "rm": "lifecycle:cmd_rm",
    "wait": "lifecycle:cmd_wait",
    "rename": "lifecycle:cmd_rename",
    "top": "listing:cmd_top",
    "inspect": "listing:cmd_inspect",
    "container": "containers:cmd_container",
    "pause": "lifecycle:cmd_pause",
    "unpause": "lifecycle:cmd_unpause",
    "update": "lifecycle:cmd_update",
    "attach": "containers:cmd_attach",
    # networking (issue 4)
    "network": "network:cmd_network",
    "port": "network:cmd_port",
    # exec, commit, volumes (issue 5)
    "exec": "exec:cmd_exec",
    "commit": "commit:cmd_commit",
    "volume": "volume:cmd_volume",
    # events (issue 6)
    "events": "events:cmd_events",
    "subscriber": "events:cmd_subscriber",
    # registry (issue 12)
    "push": "registry:cmd_push",
    "login": "registry:cmd_login",
    "logout": "registry:cmd_logout",
    # container filesystems and usage (issue 14)
    "cp": "cp:cmd_cp",
    "diff": "fsverbs:cmd_diff",
    "export": "fsverbs:cmd_export",
    "stats": "stats:cmd_stats",
    "completion": "completion:cmd_completion",
}

USAGE = """usage: aiorun [--root DIR] [--run-root DIR] [-H SOCKET] COMMAND [ARGS...]

A container engine on an async core. Commands:
  run, create, start, stop, kill, restart, rm, ps, logs, inspect, wait, rename, top, exec,
  attach, pause, unpause, update, cp, diff, export, stats
  build, pull, import, images, tag, rmi, history, save, load, commit
  push, login, logout
  network, port, volume, events, info, version, system, serve, completion
Run 'aiorun COMMAND --help' for a command's options; 'aiorun --version' for the version.
"""


class Context:
    """Global options, shared by every verb."""

    def __init__(self, root: str | None, run_root: str | None, host: str | None,
                 debug: bool) -> None:
        self._root = root
        self._run_root = run_root
        self._paths: Paths | None = None
        self.host = host
        self.debug = debug

    @property
    def paths(self) -> Paths:
        """:class:`aiorun.config.Paths` for the global options (imported on first use:
        the hot verbs only need :attr:`socket_path`)."""
        if self._paths is None:
            from aiorun.config import Paths
            self._paths = Paths.from_env(self._root, self._run_root)
        return self._paths

    @property
    def socket_path(self) -> str:
        if self.host:
            return self.host.removeprefix("unix://")
        if self._paths is not None:
            return str(self._paths.socket)
        # Paths.socket's rule, without importing aiorun.config (dataclasses + pathlib are
        # ~10 ms of every CLI start): AIORUN_SOCKET, else <run root>/aiorun.sock.
        env = os.environ.get("AIORUN_SOCKET")
        if env:
            return env
        run = self._run_root or os.environ.get("AIORUN_RUN") or "/run/aiorun"
        return os.path.join(os.path.abspath(run), "aiorun.sock")

    def lost_hint(self) -> str:
        """What to check when the daemon hung up on a request."""
        if self.host:                   # another engine's socket: its log is not ours to name
            return "is it still running?"
        return f"is it still running? see {self.paths.daemon_log}"

    def client(self, autostart: bool = True) -> Client:
        """A client for the daemon, starting ``aiorun serve`` in the background if needed."""
        from aiorun.cli.autostart import connect
        return connect(self, autostart=autostart)


def parse_globals(argv: list[str]) -> tuple[dict[str, object], list[str]]:
    opts: dict[str, object] = {"root": None, "run_root": None, "host": None, "debug": False}
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("--root", "--run-root", "-H", "--host") and i + 1 < len(argv):
            key = {"--root": "root", "--run-root": "run_root", "-H": "host", "--host": "host"}[a]
            opts[key] = argv[i + 1]
            i += 2
        elif a.startswith(("--root=", "--run-root=", "--host=")):
            k, _, v = a.partition("=")
            opts[k.lstrip("-").replace("-", "_")] = v
            i += 1
        elif a in ("-D", "--debug"):
            opts["debug"] = True
            i += 1
        else:
            break
    return opts, argv[i:]


def main(argv: list[str] | None = None) -> int:
    """The ``aiorun`` command. Called without ``argv`` (the console script, ``python -m``),
    a client verb ends the process itself once its output is flushed: the interpreter's
    orderly shutdown (module teardown, GC, thread joins) is ~8 ms of every command and
    does nothing useful for a client. ``serve`` (the daemon) still exits normally."""
    if argv is not None:
        return _main(argv)
    argv = sys.argv[1:]
    rc = _main(argv)
    if parse_globals(argv)[1][:1] == ["serve"]:
        return rc
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:                        # reader went away: like a normal exit's EPIPE
        rc = rc or 1
    os._exit(rc)


def _main(argv: list[str]) -> int:
    opts, rest = parse_globals(argv)
    if not rest or rest[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0 if rest else 1
    if rest[0] in ("-v", "--version"):
        from aiorun import __version__
        sys.stdout.write(f"aiorun version {__version__}\n")
        return 0
    verb, args = rest[0], rest[1:]
    target = VERBS.get(verb)
    if target is None:
        sys.stderr.write(f"aiorun: '{verb}' is not an aiorun command.\nSee 'aiorun --help'.\n")
        return 1
    ctx = Context(opts["root"], opts["run_root"], opts["host"], bool(opts["debug"]))  # type: ignore[arg-type]
    modname, func = target.split(":")
    from aiorun.errors import AiorunError
    failed = 125 if verb in ("run", "create") else 1     # docker's statuses
    try:
        # __import__ + sys.modules, not importlib.import_module: importlib's package is
        # ~0.5 ms of import for one function call
        __import__(f"aiorun.cli.{modname}")
        mod = sys.modules[f"aiorun.cli.{modname}"]
        return int(getattr(mod, func)(ctx, args) or 0)
    except AiorunError as exc:
        sys.stderr.write(error_line(ctx, exc))
        return failed
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # stdout's reader went away (`aiorun images | head -1`): a quiet exit, like any Unix
        # tool. The daemon's socket never gets here: the client raises ConnectionLost.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except ConnectionError as exc:
        # A reset the client did not see (a verb's own use of a hijacked socket): it can
        # only be the daemon's connection.
        from aiorun.api.client import ConnectionLost
        sys.stderr.write(error_line(ctx, ConnectionLost(str(exc))))
        return failed
    except OSError as exc:
        # A path the CLI could not use (the state root, a file argument): one sentence.
        sys.stderr.write(f"aiorun: {os_error_sentence(exc)}\n")
        return failed
    except Exception as exc:
        # A bug of ours: still one line (the traceback only with --debug), never a dump.
        if ctx.debug:
            import traceback
            traceback.print_exc()
        detail = str(exc) or type(exc).__name__
        sys.stderr.write(f"aiorun: internal error in '{verb}': {type(exc).__name__}: {detail} "
                         "(run with --debug for the traceback)\n")
        return failed


def error_line(ctx: Context, exc: BaseException) -> str:
    """The one line the CLI prints for a failure: the daemon's error answer, a lost
    connection (with where to look), or the CLI's own failure."""
    from aiorun.api.client import ConnectFailed, ConnectionLost
    from aiorun.errors import AiorunError
    if not isinstance(exc, AiorunError):
        return f"aiorun: {exc}\n"
    if exc.status:
        return f"Error response from daemon: {exc.message}\n"
    if isinstance(exc, ConnectionLost):
        detail = f" [{exc.detail}]" if ctx.debug and exc.detail else ""
        return f"aiorun: {exc.message} ({ctx.lost_hint()}){detail}\n"
    if isinstance(exc, ConnectFailed):  # it answered a moment ago (autostart checked)
        return f"aiorun: {exc.message} ({ctx.lost_hint()})\n"
    return f"aiorun: {exc.message}\n"


def os_error_sentence(exc: OSError) -> str:
    """``cannot use /path: Not a directory``: the path and the OS's reason, no errno noise."""
    reason = exc.strerror or str(exc)
    if exc.filename is None:
        return reason
    return f"cannot use {exc.filename}: {reason}"


if __name__ == "__main__":
    sys.exit(main())

"""The runtime command line, parsed from a table (pure; no argparse: every containerd or
conmon call starts a new interpreter, and argparse + re cost more than the work of
``state`` or ``start``).

    [GLOBAL...] VERB [OPTIONS...] [ID] [ARGS...]

Options take ``--name value`` or ``--name=value``; short aliases as runc's. An option a verb
does not know is an error naming it (never ignored).
"""

from __future__ import annotations

from .errors import UsageError

#: name → (aliases, takes a value, repeatable)
GLOBAL = {"root": (("--root",), True, False), "log": (("--log",), True, False),
          "log_format": (("--log-format",), True, False), "debug": (("--debug",), False, False),
          "systemd_cgroup": (("--systemd-cgroup",), False, False),
          "version": (("--version", "-v"), False, False), "help": (("--help", "-h"), False, False)}

_CREATE = {"bundle": (("--bundle", "-b"), True, False),
           "pid_file": (("--pid-file",), True, False),
           "console_socket": (("--console-socket",), True, False),
           "no_pivot": (("--no-pivot",), False, False),
           "no_new_keyring": (("--no-new-keyring",), False, False),
           "preserve_fds": (("--preserve-fds",), True, False)}

#: verb → (options, positional names after the options; "*" = the rest of the line)
VERBS: dict[str, tuple[dict[str, tuple[tuple[str, ...], bool, bool]], tuple[str, ...]]] = {
    "create": (_CREATE, ("id",)),
    "run": ({**_CREATE, "detach": (("--detach", "-d"), False, False)}, ("id",)),
    "start": ({}, ("id",)),
    "state": ({}, ("id",)),
    "kill": ({"all": (("--all", "-a"), False, False)}, ("id", "signal?")),
    "delete": ({"force": (("--force", "-f"), False, False)}, ("id",)),
    "exec": ({"process": (("--process", "-p"), True, False),
              "tty": (("--tty", "-t"), False, False),
              "console_socket": (("--console-socket",), True, False),
              "pid_file": (("--pid-file",), True, False),
              "detach": (("--detach", "-d"), False, False),
              "cwd": (("--cwd",), True, False), "env": (("--env", "-e"), True, True),
              "user": (("--user", "-u"), True, False),
              "preserve_fds": (("--preserve-fds",), True, False)}, ("id", "*")),
    "ps": ({"format": (("--format", "-f"), True, False)}, ("id",)),
    "pause": ({}, ("id",)),
    "resume": ({}, ("id",)),
    "update": ({"resources": (("--resources", "-r"), True, False),
                "memory": (("--memory",), True, False),
                "memory_swap": (("--memory-swap",), True, False),
                "cpu_shares": (("--cpu-shares",), True, False),
                "cpu_quota": (("--cpu-quota",), True, False),
                "cpu_period": (("--cpu-period",), True, False),
                "pids_limit": (("--pids-limit",), True, False)}, ("id",)),
    "list": ({"format": (("--format", "-f"), True, False),
              "quiet": (("--quiet", "-q"), False, False)}, ()),
    "features": ({}, ()),
    "spec": ({"bundle": (("--bundle", "-b"), True, False),
              "rootless": (("--rootless",), False, False)}, ()),
}


class Args:
    """What :func:`parse` found: ``verb``, ``opts`` (global and verb options by name),
    ``pos`` (positional arguments by name), ``rest`` (exec's command)."""

    def __init__(self) -> None:
        self.verb = ""
        self.opts: dict[str, object] = {}
        self.pos: dict[str, str] = {}
        self.rest: list[str] = []

    def get(self, name: str, default: object = None) -> object:
        return self.opts.get(name, default)

    def str(self, name: str, default: str = "") -> str:
        v = self.opts.get(name, default)
        return v if isinstance(v, str) else default


def _take(argv: list[str], i: int, table: dict[str, tuple[tuple[str, ...], bool, bool]],
          out: dict[str, object]) -> int | None:
    """Consume the option at argv[i] if ``table`` knows it; the next index, else None."""
    word = argv[i]
    name_part, eq, value = word.partition("=")
    for name, (aliases, takes, repeat) in table.items():
        if name_part not in aliases:
            continue
        if takes:
            if not eq:
                if i + 1 >= len(argv):
                    raise UsageError(f"option {name_part} needs a value")
                value, i = argv[i + 1], i + 1
            if repeat:
                lst = out.setdefault(name, [])
                assert isinstance(lst, list)
                lst.append(value)
            else:
                out[name] = value
        else:
            if eq:
                if value not in ("true", "false"):
                    raise UsageError(f"option {name_part} takes no value")
                out[name] = value == "true"
            else:
                out[name] = True
        return i + 1
    return None


def parse(argv: list[str]) -> Args:
    a = Args()
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        nxt = _take(argv, i, GLOBAL, a.opts)
        if nxt is None:
            raise UsageError(f"unknown global option {argv[i].partition('=')[0]}")
        i = nxt
    if i >= len(argv):
        return a
    a.verb = argv[i]
    if a.verb not in VERBS:
        raise UsageError(f"unknown command {a.verb!r} (one of: {', '.join(VERBS)})")
    table, positional = VERBS[a.verb]
    table = {**table, "help": (("--help", "-h"), False, False)}
    i += 1
    names = list(positional)
    while i < len(argv):
        word = argv[i]
        if names and names[0] == "*" and "id" in a.pos:
            a.rest = argv[i + 1:] if word == "--" else argv[i:]
            break
        if word.startswith("-") and word != "-" and word != "--":
            nxt = _take(argv, i, table, a.opts)
            if nxt is None:
                raise UsageError(f"{a.verb}: unknown option {word.partition('=')[0]}")
            i = nxt
            continue
        if word == "--":
            i += 1
            continue
        if not names:
            raise UsageError(f"{a.verb}: unexpected argument {word!r}")
        a.pos[names.pop(0).rstrip("?")] = word
        i += 1
    if a.opts.get("help"):
        return a
    missing = [n for n in names if n not in ("*",) and not n.endswith("?")]
    if missing:
        raise UsageError(f"{a.verb}: missing {' and '.join(m.upper() for m in missing)}")
    return a


def usage(verb: str = "") -> str:
    if verb in VERBS:
        table, positional = VERBS[verb]
        opts = " ".join(f"[{'|'.join(al)}{' V' if takes else ''}]"
                        for al, takes, _ in table.values())
        pos = " ".join(p.upper().replace("*", "COMMAND...") for p in positional)
        return f"usage: aiorun-runtime {verb} {opts} {pos}".rstrip()
    return ("usage: aiorun-runtime [--root DIR] [--log FILE] [--log-format text|json] "
            "[--debug] VERB ...\nverbs: " + ", ".join(VERBS))

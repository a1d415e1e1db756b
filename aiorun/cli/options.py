"""The CLI's one option parser: every verb declares its options here and is parsed by it.

Docker's (pflag's) syntax: ``-it`` clusters, ``-e K=V`` / ``-eK=V`` / ``--env=K=V``,
``--rm=false`` for booleans, repeatable list options, ``--`` ends the options. A verb either
takes options anywhere among its arguments (``ps x -a``) or, like ``run`` and ``exec``, only
before its first argument (everything after the image is the container's command).

``--help`` (and ``-h`` where the verb does not use it for something else, as ``run -h HOST``
does) prints the verb's usage and options. An unknown option is refused with docker's words.

On ``aiorun run``'s hot path: imports only ``sys`` (no typing, argparse or dataclasses).
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs ~3 ms of every CLI start
    from typing import Any, Callable, Iterable

    VerbFunction = Callable[[Any, "Opts", list[str]], int]

BOOL, STR, LIST = "bool", "str", "list"


class UsageError(Exception):
    """Bad command line: reported as ``aiorun VERB: MESSAGE`` + a pointer to ``--help``."""


class HelpRequested(Exception):
    """``--help`` / ``-h`` was given: the caller prints the verb's help and exits 0."""


class Option:
    """One option of a verb: its spellings (``"-e --env"``), kind (BOOL, STR or LIST) and help.

    ``dest`` (the attribute name on :class:`Opts`) defaults to the long name with ``-`` → ``_``.
    ``hidden`` options are accepted but not listed in ``--help`` (compatibility spellings).
    """

    __slots__ = ("names", "kind", "help", "dest", "metavar", "default", "hidden")

    def __init__(self, names: str, kind: str = BOOL, help: str = "", *, dest: str = "",
                 metavar: str = "", default: Any = None, hidden: bool = False) -> None:
        self.names = names.split()
        self.kind = kind
        self.help = help
        longest = max(self.names, key=len)
        self.dest = dest or longest.lstrip("-").replace("-", "_")
        self.metavar = metavar or {STR: "string", LIST: "list"}.get(kind, "")
        self.default = default
        self.hidden = hidden

    def initial(self) -> Any:
        if self.default is not None:
            return list(self.default) if self.kind == LIST else self.default
        return [] if self.kind == LIST else (False if self.kind == BOOL else None)


class Opts(dict):
    """Parsed option values by ``dest``; read them as attributes (``opts.detach``).

    Only declared options exist: a misspelt name raises AttributeError instead of reading
    as an option that was not given.
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"no option {name!r} is declared for this verb") from None


class Command:
    """A verb's declaration: name (``"ps"``, ``"network create"``), argument synopsis,
    one-line description and options."""

    def __init__(self, name: str, args: str, description: str,
                 options: Iterable[Option] = (), *, interspersed: bool = True,
                 usage_status: int = 1) -> None:
        self.name = name
        self.args = args
        self.description = description
        self.options = list(options)
        #: options may follow arguments (``ps x -a``); False: they end at the first argument
        self.interspersed = interspersed
        #: exit status of a usage error (125 for run/create, as docker)
        self.usage_status = usage_status
        self.by_name: dict[str, Option] = {}
        for opt in self.options:
            for n in opt.names:
                self.by_name[n] = opt

    def renamed(self, name: str) -> Command:
        """The same verb under another name (``images`` as ``image ls``)."""
        return Command(name, self.args, self.description, self.options,
                       interspersed=self.interspersed, usage_status=self.usage_status)

    # ------------------------------------------------------------------ parsing

    def parse(self, argv: list[str]) -> tuple[Opts, list[str]]:
        """(options, arguments). Raises UsageError, or HelpRequested for ``--help``."""
        opts = Opts()
        for opt in self.options:
            opts[opt.dest] = opt.initial()
        rest: list[str] = []
        i = 0
        while i < len(argv):
            a = argv[i]
            if a == "--":
                rest += argv[i + 1:]
                break
            if a.startswith("--") and len(a) > 2:
                i = self._long(opts, argv, i)
            elif a.startswith("-") and len(a) > 1 and not a[1:].isdigit():
                i = self._short(opts, argv, i)
            elif not self.interspersed:
                rest += argv[i:]
                break
            else:
                rest.append(a)
            i += 1
        return opts, rest

    def _long(self, opts: Opts, argv: list[str], i: int) -> int:
        name, eq, val = argv[i].partition("=")
        opt = self.by_name.get(name)
        if opt is None:
            if name == "--help":
                raise HelpRequested()
            raise UsageError(f"unknown flag: {name}")
        if opt.kind == BOOL:
            opts[opt.dest] = _bool(val, name) if eq else True
            return i
        if not eq:
            i += 1
            if i >= len(argv):
                raise UsageError(f"flag needs an argument: {name}")
            val = argv[i]
        _store(opts, opt, val)
        return i

    def _short(self, opts: Opts, argv: list[str], i: int) -> int:
        a = argv[i]
        if a == "-h" and "-h" not in self.by_name:
            raise HelpRequested()
        j = 1
        while j < len(a):
            flag = "-" + a[j]
            opt = self.by_name.get(flag)
            if opt is None:
                raise UsageError(f"unknown shorthand flag: {a[j]!r} in {a}")
            if opt.kind == BOOL:
                if a[j + 1:j + 2] == "=":           # -p=false
                    opts[opt.dest] = _bool(a[j + 2:], flag)
                    return i
                opts[opt.dest] = True
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
            _store(opts, opt, val)
            return i
        return i

    # ------------------------------------------------------------------ help

    def help(self) -> str:
        synopsis = f"aiorun {self.name}"
        if self.options:
            synopsis += " [OPTIONS]"
        if self.args:
            synopsis += " " + self.args
        out = [f"Usage:  {synopsis}", "", self.description]
        rows = []
        for opt in self.options:
            if opt.hidden:
                continue
            shorts = [n for n in opt.names if not n.startswith("--")]
            longs = [n for n in opt.names if n.startswith("--")]
            names = ", ".join(shorts[:1] + longs[:1]) if shorts else "    " + longs[0]
            if opt.metavar:
                names += " " + opt.metavar
            rows.append((names, opt.help))
        if rows:
            width = max(len(n) for n, _ in rows) + 3
            out += ["", "Options:"] + [f"  {n.ljust(width)}{h}".rstrip() for n, h in rows]
        return "\n".join(out) + "\n"


def _bool(val: str, name: str) -> bool:
    """``--rm=false``: only false/0 turn a boolean off (what the parser always accepted)."""
    return val.lower() not in ("false", "0")


def _store(opts: Opts, opt: Option, val: str) -> None:
    if opt.kind == LIST:
        opts[opt.dest].append(val)
    else:
        opts[opt.dest] = val


# --------------------------------------------------------------------------- verbs


def err(msg: str) -> None:
    sys.stderr.write(msg.rstrip("\n") + "\n")


def usage_fail(verb: str, problem: object, status: int) -> int:
    """Docker's report of a bad command line."""
    err(f"aiorun {verb}: {problem}\nSee 'aiorun {verb} --help'.")
    return status


class Verb:
    """A verb's entry point ``(ctx, argv) -> exit status``: parses ``argv`` with its
    :class:`Command`, answers ``--help``, reports usage errors, else calls
    ``function(ctx, opts, args)``."""

    def __init__(self, command: Command, function: VerbFunction) -> None:
        self.command = command
        self.function = function

    def __call__(self, ctx: Any, argv: list[str]) -> int:
        spec = self.command
        try:
            opts, args = spec.parse(argv)
            return self.function(ctx, opts, args)
        except HelpRequested:
            sys.stdout.write(spec.help())
            return 0
        except UsageError as exc:
            return usage_fail(spec.name, exc, spec.usage_status)

    def renamed(self, name: str) -> Verb:
        return Verb(self.command.renamed(name), self.function)


def verb(name: str, args: str, description: str, *options: Option,
         interspersed: bool = True, usage_status: int = 1) -> Callable[[VerbFunction], Verb]:
    """Decorator: ``@verb("ps", "", "List containers", Option("-a --all", ...))`` on a
    ``function(ctx, opts, args) -> int`` makes it a :class:`Verb`."""
    spec = Command(name, args, description, options, interspersed=interspersed,
                   usage_status=usage_status)

    def wrap(function: VerbFunction) -> Verb:
        return Verb(spec, function)
    return wrap


class Group:
    """A verb with subcommands (``aiorun network ls``): ``subs`` maps each subcommand name to
    its :class:`Verb`; ``aliases`` maps other spellings (``list`` → ``ls``)."""

    def __init__(self, name: str, description: str, subs: dict[str, Verb],
                 aliases: dict[str, str] | None = None) -> None:
        self.name = name
        self.description = description
        self.subs = subs
        self.aliases = aliases or {}

    def help(self) -> str:
        width = max(len(n) for n in self.subs) + 3
        lines = [f"  {n.ljust(width)}{v.command.description}" for n, v in self.subs.items()]
        return (f"Usage:  aiorun {self.name} COMMAND\n\n{self.description}\n\nCommands:\n"
                + "\n".join(lines) + f"\n\nRun 'aiorun {self.name} COMMAND --help' for more "
                "information on a command.\n")

    def __call__(self, ctx: Any, argv: list[str]) -> int:
        if not argv or argv[0] in ("-h", "--help", "help"):
            sys.stdout.write(self.help())
            return 0 if argv else 1
        sub = self.subs.get(self.aliases.get(argv[0], argv[0]))
        if sub is None:
            err(f"aiorun {self.name}: unknown command {argv[0]!r}\n"
                f"See 'aiorun {self.name} --help'.")
            return 1
        return sub(ctx, argv[1:])


# --------------------------------------------------------------------------- KEY=VALUE values


def kv_pairs(items: list[str], what: str) -> dict[str, str]:
    """``["a=1", "b"]`` → ``{"a": "1", "b": ""}`` (``--label``, ``--opt``); an empty key is a
    usage error naming ``what``."""
    out: dict[str, str] = {}
    for it in items:
        k, _, v = it.partition("=")
        if not k:
            raise UsageError(f"invalid {what} {it!r} (want KEY=VALUE)")
        out[k] = v
    return out


def filters(items: list[str]) -> dict[str, list[str]]:
    """Repeated ``--filter KEY=VALUE`` → Docker's filters map ``{"KEY": [VALUE, ...]}``."""
    out: dict[str, list[str]] = {}
    for it in items:
        k, eq, v = it.partition("=")
        if not eq or not k:
            raise UsageError(f"bad format of filter (expected name=value): {it}")
        out.setdefault(k, []).append(v)
    return out


def integer(value: str, flag: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise UsageError(f'invalid argument "{value}" for "{flag}" flag: not an integer') \
            from None


def need(args: list[str], verb: str, at_least: int, at_most: int | None = None) -> None:
    """Refuse a wrong number of arguments, in docker's words."""
    if at_most is not None and at_least == at_most and len(args) != at_least:
        raise UsageError(f'"{verb}" requires exactly {at_least} argument'
                         f'{"s" if at_least != 1 else ""}')
    if len(args) < at_least:
        raise UsageError(f'"{verb}" requires at least {at_least} argument'
                         f'{"s" if at_least != 1 else ""}')
    if at_most is not None and len(args) > at_most:
        raise UsageError(f'"{verb}" requires at most {at_most} argument'
                         f'{"s" if at_most != 1 else ""}')

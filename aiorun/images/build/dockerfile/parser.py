"""The instruction layer of BuildKit's Dockerfile parser: logical lines → :class:`Instruction`.

For every line: the keyword, the flags split off as BuildKit does for *every* instruction
(quotes and backslashes processed, ``--`` ends them), and the arguments split per instruction
the way BuildKit's node tree holds them (``args``):

* ADD COPY VOLUME: a JSON array of strings, else whitespace-separated words (not
  quote-aware: each word is expanded on its own at build time);
* RUN CMD ENTRYPOINT SHELL: a JSON array of strings (``json``), else the whole text as one
  argument; HEALTHCHECK: the type word, then the same;
* ENV LABEL: ``key, value, "="`` triples, or ``key, value, ""`` for the legacy ``KEY value``
  form (value = the rest of the line); quotes are kept, the expansion removes them;
* ARG: words (quotes kept, ``X="a b"`` is one word); FROM EXPOSE: whitespace-split words;
  USER WORKDIR STOPSIGNAL MAINTAINER: the whole text; ONBUILD: the trigger's keyword and args.

A JSON array that is valid JSON but holds a non-string is an error, as in BuildKit. Every
problem is a :class:`DockerfileError` naming the line, raised by :func:`parse` before anything
is built.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Iterator, Mapping

from aiorun.errors import InvalidArgument
from aiorun.images.build.dockerfile.lines import Heredoc, LineError, heredoc_from_word, \
    logical_lines
from aiorun.images.build.flags import Flags, check as check_flags
from aiorun.images.build.runflags import check_run_flags

#: Instructions aiorun knows; anything else is a parse error naming the line.
KNOWN = ("FROM", "RUN", "CMD", "ENTRYPOINT", "ENV", "LABEL", "EXPOSE", "ADD", "COPY", "USER",
         "WORKDIR", "VOLUME", "ARG", "STOPSIGNAL", "SHELL", "MAINTAINER", "ONBUILD",
         "HEALTHCHECK")
_WS = re.compile(r"[\t\v\f\r ]+")
_STAGE_NAME = re.compile(r"^[a-z][a-z0-9-_.]*$")
_NOT_STRINGS = "when using JSON array syntax, arrays must be comprised of strings only"


def _space(c: str) -> bool:
    """Go's ``unicode.IsSpace`` (Python's ``isspace`` also takes U+001C..U+001F)."""
    return c in " \t\n\v\f\r\x85\xa0" or (c > "\xff" and c.isspace())


class DockerfileError(InvalidArgument):
    """A Dockerfile problem; the message names the file (when known) and the line."""

    def __init__(self, message: str, line: int | None = None, file: str = "") -> None:
        where = f" of {file}" if file else ""
        if line is not None:
            message = f"dockerfile parse error on line {line}{where}: {message}"
        elif file:
            message = f"{file}: {message}"
        super().__init__(message)
        self.line = line


@dataclass
class Instruction:
    """One instruction.

    ``args`` are its arguments as BuildKit's parser splits them (see the module doc);
    ``rest`` is the raw argument text after the flags; ``json`` the list when the arguments
    are in exec (JSON array) form; ``line``/``end_line`` the physical lines it spans;
    ``heredocs`` the heredocs it opened; ``escape`` the file's escape token."""

    cmd: str
    rest: str
    line: int
    original: str
    flags: Flags = field(default_factory=Flags)
    json: list[str] | None = None
    args: list[str] = field(default_factory=list)
    end_line: int = 0
    heredocs: list[Heredoc] = field(default_factory=list)
    escape: str = "\\"

    def __str__(self) -> str:
        return self.original

    def dump(self) -> tuple[str, list[str], list[str], int, int]:
        """BuildKit's AST view: (keyword, flags, args, start line, end line)."""
        return self.cmd.lower(), list(self.flags.raw), list(self.args), self.line, \
            self.end_line


# --- splitting -------------------------------------------------------------------------
def extract_flags(line: str) -> tuple[str, list[str]]:
    """``(rest, flag words)``: the leading ``--flag[=value]`` words of ``line`` (quotes and
    ``\\`` processed); a ``--`` word ends them and is dropped."""
    words: list[str] = []
    cur: list[str] = []
    phase, quote, blank_ok = "space", "", False
    i, n = 0, len(line)
    while i <= n:
        ch = line[i] if i < n else ""
        if phase == "space":
            if i == n:
                break
            if _space(ch):
                i += 1
                continue
            if ch != "-" or i + 1 == n or line[i + 1] != "-":
                return line[i:], words
            phase = "word"
        if i == n:
            w = "".join(cur)
            if w != "--" and (blank_ok or w):
                words.append(w)
            break
        if phase == "word":
            if _space(ch):
                w = "".join(cur)
                if w == "--":
                    return line[i:], words
                if blank_ok or w:
                    words.append(w)
                phase, cur, blank_ok = "space", [], False
                i += 1
                continue
            if ch in ("'", '"'):
                quote, blank_ok, phase = ch, True, "quote"
                i += 1
                continue
        elif ch == quote:
            phase = "word"
            i += 1
            continue
        if ch == "\\":
            if i + 1 == n:
                if phase == "quote":
                    phase = "word"
                i += 1
                continue
            i += 1
            ch = line[i]
        cur.append(ch)
        i += 1
    return "", words


def split_command(line: str) -> tuple[str, list[str], str]:
    """``(keyword as written, flag words, argument text)``."""
    parts = _WS.split(line.strip(), maxsplit=1)
    if len(parts) < 2:
        return parts[0], [], ""
    rest, flags = extract_flags(parts[1])
    return parts[0], flags, rest.strip()


def parse_words(rest: str, escape: str) -> list[str]:
    """Words as BuildKit's ``parseWords``: split on whitespace outside quotes, quotes and
    escapes kept (the expansion processes them)."""
    words: list[str] = []
    cur: list[str] = []
    phase, quote, blank_ok = "space", "", False
    i, n = 0, len(rest)
    while True:
        if phase == "space":
            if i == n:
                break
            if _space(rest[i]):
                i += 1
                continue
            phase = "word"
        if i == n:
            if blank_ok or cur:
                words.append("".join(cur))
            break
        ch = rest[i]
        if phase == "word":
            if _space(ch):
                if blank_ok or cur:
                    words.append("".join(cur))
                phase, cur, blank_ok = "space", [], False
                i += 1
                continue
            if ch in ("'", '"'):
                quote, blank_ok, phase = ch, True, "quote"
            elif ch == escape:
                if i + 1 == n:
                    i += 1
                    continue
                cur.append(ch)
                i += 1
                ch = rest[i]
            cur.append(ch)
            i += 1
            continue
        if ch == quote:
            phase = "word"
        elif ch == escape and quote != "'":
            if i + 1 == n:
                phase = "word"
                i += 1
                continue
            cur.append(ch)
            i += 1
            ch = rest[i]
        cur.append(ch)
        i += 1
    return words


def _no_constants(name: str) -> object:
    raise ValueError(name)   # NaN/Infinity are not JSON for Go either


def _json(rest: str) -> list[str] | None:
    """The JSON array of strings ``rest`` is, None when it is not JSON; raises ValueError
    when it is a JSON array holding something else than strings."""
    t = rest.lstrip()
    if not t.startswith("["):
        return None
    try:
        v = json.loads(t, parse_constant=_no_constants)
    except ValueError:
        return None
    if not isinstance(v, list):
        return None
    if not all(isinstance(x, str) for x in v):
        raise ValueError(_NOT_STRINGS)
    return v


def _name_val(cmd: str, rest: str, escape: str) -> list[str]:
    words = parse_words(rest, escape)
    if not words:
        return []
    if "=" not in words[0]:     # legacy KEY value: the value is the rest of the line
        parts = _WS.split(rest, maxsplit=1)
        if len(parts) < 2:
            raise ValueError(f"{cmd} must have two arguments")
        return [parts[0], parts[1], ""]
    out: list[str] = []
    for w in words:
        if "=" not in w:
            raise ValueError(f"Syntax error - can't find = in {w!r}. Must be of the form: "
                             "name=value")
        k, _, v = w.partition("=")
        out += [k, v, "="]
    return out


def split_args(cmd: str, rest: str, escape: str) -> tuple[list[str], list[str] | None]:
    """``(args, json list or None)`` of instruction ``cmd`` (upper case) with text ``rest``.
    Raises ValueError with BuildKit's message for a bad line."""
    if cmd in ("ADD", "COPY", "VOLUME"):
        js = _json(rest)
        if js is not None:
            return js, js
        return ([w for w in _WS.split(rest) if w] if rest else []), None
    if cmd in ("RUN", "CMD", "ENTRYPOINT", "SHELL"):
        if not rest:
            return [], None
        js = _json(rest)
        return (js, js) if js is not None else ([rest], None)
    if cmd in ("ENV", "LABEL"):
        return _name_val(cmd, rest, escape), None
    if cmd == "ARG":
        return parse_words(rest, escape), None
    if cmd in ("FROM", "EXPOSE"):
        return ([w for w in _WS.split(rest) if w] if rest else []), None
    if cmd == "HEALTHCHECK":
        m = re.match(r"(\S+)\s*(.*)$", rest, re.S)
        if not m:
            return [], None
        js = _json(m.group(2)) if m.group(2) else None
        if js is not None:
            return [m.group(1)] + js, js
        return [m.group(1)] + ([m.group(2)] if m.group(2) else []), None
    if cmd == "ONBUILD":
        if not rest:
            return [], None
        kw, flags, sub = split_command(rest)
        sub_args, _ = split_args(kw.upper(), sub, escape)
        return [kw.upper()] + sub_args, None
    return ([rest] if rest else []), None     # USER WORKDIR STOPSIGNAL MAINTAINER


def _takes_heredocs(line: str) -> bool:
    kw, _, rest = split_command(line)
    kw = kw.upper()
    if kw == "ONBUILD":
        kw, _, rest = split_command(rest)
        kw = kw.upper()
    if kw not in ("RUN", "COPY", "ADD"):
        return False
    try:
        return _json(rest) is None
    except ValueError:
        return False


# --- the checks BuildKit's instructions layer makes ------------------------------------
def _check(ins: Instruction) -> str | None:
    c, a = ins.cmd, ins.args
    problem = check_flags(c, ins.flags)
    if not problem and c == "RUN":
        problem = check_run_flags(ins.flags)
    if problem:
        return problem
    if c in ("ENV", "LABEL", "EXPOSE", "VOLUME", "ARG", "ONBUILD", "HEALTHCHECK", "SHELL") \
            and not a:
        return f"{c} requires at least one argument"
    if c in ("MAINTAINER", "WORKDIR", "USER", "STOPSIGNAL") and len(a) != 1:
        return f"{c} requires exactly one argument"
    if c in ("RUN", "CMD", "ENTRYPOINT") and not a and ins.json is None:
        return f"{c} requires at least one argument"
    if c in ("ENV", "LABEL"):
        if any(not a[j] for j in range(0, len(a), 3)):
            return f"{c} names can not be blank"
    elif c == "ARG":
        if any(w.startswith("=") for w in a):
            return "ARG names can not be blank"
    elif c in ("ADD", "COPY"):
        if len(a) < 2:
            return (f"{c} requires at least two arguments, but only one was provided. "
                    "Destination could not be determined")
        if heredoc_from_word(a[-1]) is not None and ins.json is None:
            return f"{c} cannot accept a heredoc as a destination"
    elif c == "FROM":
        if len(a) == 3 and a[1].lower() == "as":
            if not _STAGE_NAME.match(a[2].lower()):
                return (f"invalid name for build stage: {a[2]!r}, name can't start with a "
                        "number or contain symbols")
        elif len(a) != 1:
            return "FROM requires either one or three arguments"
    elif c == "SHELL":
        if ins.json is None:
            return "SHELL requires the arguments to be in JSON form"
    elif c == "VOLUME":
        if any(not v.strip() for v in a):
            return "VOLUME specified can not be an empty string"
    elif c == "ONBUILD":
        trig = a[0]
        if trig == "ONBUILD":
            return "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"
        if trig in ("MAINTAINER", "FROM"):
            return f"{trig} isn't allowed as an ONBUILD trigger"
        try:
            sub = make_instruction(ins.rest, ins.line, ins.end_line, ins.heredocs, ins.escape)
        except ValueError as exc:
            return f"ONBUILD trigger: {exc}"
        inner = _check(sub)
        if inner:
            return f"ONBUILD trigger: {inner}"
    elif c == "HEALTHCHECK":
        return _check_healthcheck(ins)
    return _check_words(ins)


class _AnyValue(Mapping[str, str]):
    """Every variable set (to "x"): expanding with it checks a word's syntax only."""

    def __getitem__(self, key: str) -> str:
        return "x"

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def _expanded_words(ins: Instruction) -> list[str]:
    """The words of ``ins`` the build will expand."""
    c, a = ins.cmd, ins.args
    words = [v for n, v in ins.flags if n in ("chown", "chmod", "from", "platform") and v]
    for value in ins.flags.get_all("mount"):
        words += [f.partition("=")[2] for f in value.split(",") if "$" in f]
    if c in ("ADD", "COPY"):
        words += [w for w in a[:-1] if heredoc_from_word(w) is None or ins.json is not None]
        words.append(a[-1])
    elif c in ("ENV", "LABEL"):
        words += [w for j in range(0, len(a) - 2, 3) for w in (a[j], a[j + 1])]
    elif c == "ARG":
        words += [w.partition("=")[2] for w in a if "=" in w]
    elif c == "FROM":
        words.append(a[0])
    elif c in ("EXPOSE", "STOPSIGNAL", "USER", "WORKDIR") or (c == "VOLUME" and not ins.json):
        words += a
    return words


def _check_words(ins: Instruction) -> str | None:
    """A word that cannot be expanded (unterminated quote, bad substitution) is an error
    now, before any step runs, as in BuildKit (which expands everything before it builds)."""
    from aiorun.images.build.expand import expand_word
    for w in _expanded_words(ins):
        try:
            expand_word(w, _ANY, ins.escape)
        except InvalidArgument as exc:
            return exc.message
    return None


_ANY = _AnyValue()


def _check_healthcheck(ins: Instruction) -> str | None:
    from aiorun.images.build.dockerfile.config import healthcheck
    typ = ins.args[0].upper()
    if typ == "NONE":
        if len(ins.args) > 1:
            return "HEALTHCHECK NONE takes no arguments"
        return None
    if typ != "CMD":
        return f"Unknown type {ins.args[0].upper()!r} in HEALTHCHECK (try CMD)"
    if len(ins.args) < 2 and not ins.json:
        return "Missing command after HEALTHCHECK CMD"
    try:
        healthcheck(ins)
    except DockerfileError as exc:
        return exc.message.split(": ", 1)[-1]
    return None


def make_instruction(text: str, start: int, end: int, heredocs: list[Heredoc],
                     escape: str) -> Instruction:
    """One :class:`Instruction` from a logical line (ValueError: BuildKit's message)."""
    kw, raw_flags, rest = split_command(text)
    cmd = kw.upper()
    if cmd not in KNOWN:
        raise ValueError(f"unknown instruction: {kw}")
    args, js = split_args(cmd, rest, escape)
    original = " ".join([cmd] + raw_flags + ([rest] if rest else []))
    return Instruction(cmd, rest, start, original, Flags(raw_flags), js, args, end,
                       heredocs, escape)


def parse_nodes(text: str, file: str = "") -> list[Instruction]:
    """BuildKit's AST layer only: the instructions with their flags and args split, heredocs
    read; errors are the line layer's, unknown keywords and malformed JSON arrays. The
    per-instruction checks are :func:`parse`'s."""
    try:
        escape, logical = logical_lines(text, _takes_heredocs)
    except LineError as exc:
        raise DockerfileError(exc.message, exc.line, file) from None
    out: list[Instruction] = []
    for ln in logical:
        try:
            out.append(make_instruction(ln.text, ln.start, ln.end, ln.heredocs, escape))
        except ValueError as exc:
            raise DockerfileError(str(exc), ln.start, file) from None
    return out


def parse(text: str, file: str = "") -> list[Instruction]:
    """Parse a Dockerfile (``file`` names it in errors). Raises :class:`DockerfileError`
    naming the line for every problem BuildKit's parser reports, and for a missing FROM."""
    out = parse_nodes(text, file)
    for ins in out:
        problem = _check(ins)
        if problem:
            raise DockerfileError(problem, ins.line, file)
    if not out:
        raise DockerfileError("the Dockerfile cannot be empty (file with no instructions)",
                              None, file)
    for ins in out:
        if ins.cmd == "FROM":
            break
        if ins.cmd != "ARG":
            raise DockerfileError(f"{ins.cmd} before the first FROM: a Dockerfile must begin "
                                  "with FROM (only ARG may precede it)", ins.line, file)
    else:
        raise DockerfileError("no FROM instruction: a Dockerfile must begin with FROM",
                              None, file)
    return out

"""Parsing a template's tokens into nodes: text, output pipelines and ``if``/``range``/``with``
blocks (with ``else`` / ``else if``)."""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass, field
from typing import Any

from aiorun.core.templates.lexer import Action, Text, lex, line_of
from aiorun.core.templates.values import TemplateError


@dataclass
class Node:
    pass


@dataclass
class Pipe:
    decl: list[str]                   # variables declared (:=) or assigned (=)
    cmds: list[list[Any]]             # each command: operands (see _operand)


@dataclass
class Out(Node):
    pipe: Pipe


@dataclass
class Block(Node):
    kind: str                         # if / range / with
    pipe: Pipe
    body: list[Any] = field(default_factory=list)
    orelse: list[Any] = field(default_factory=list)


# operands are tuples: ("field", [names]) on dot, ("var", name, [names]), ("lit", value),
# ("ident", name), ("pipe", Pipe, [names])


def parse(src: str) -> list[Any]:
    items = lex(src)
    pos = 0

    def parse_list(stop: tuple[str, ...]) -> tuple[list[Any], str, Action | None]:
        nonlocal pos
        nodes: list[Any] = []
        while pos < len(items):
            it = items[pos]
            pos += 1
            if isinstance(it, Text):
                if it.text:
                    nodes.append(it)
                continue
            toks = it.tokens
            if not toks:
                raise TemplateError(f"template: :{line_of(src, it.pos)}: missing value for command")
            kw = toks[0]
            if kw in ("end", "else"):
                if kw not in stop:
                    raise TemplateError(f"template: :{line_of(src, it.pos)}: "
                                        f"unexpected {{{{{kw}}}}}")
                return nodes, kw, it
            if kw in ("if", "range", "with"):
                nodes.append(parse_block(kw, toks[1:], it.pos))
                continue
            if kw in ("define", "template", "block"):
                raise TemplateError(f"template: {{{{{kw}}}}} is not supported")
            nodes.append(Out(_parse_pipe(toks, src, it.pos, False)))
        if stop:
            raise TemplateError("template: unexpected EOF (missing {{end}})")
        return nodes, "", None

    def parse_block(kind: str, toks: list[str], at: int) -> Block:
        blk = Block(kind, _parse_pipe(toks, src, at, kind == "range"))
        blk.body, end, endit = parse_list(("end", "else"))
        if end == "else":
            assert endit is not None
            rest = endit.tokens[1:]
            if rest and rest[0] in ("if", "with"):
                # {{else if x}} is {{else}}{{if x}}...{{end}}{{end}} sharing one {{end}}
                blk.orelse = [parse_block(rest[0], rest[1:], endit.pos)]
            else:
                blk.orelse, _, _ = parse_list(("end",))
        return blk

    nodes, _, _ = parse_list(())
    return nodes


def _parse_pipe(toks: list[str], src: str, pos: int, allow_two: bool) -> Pipe:
    decl: list[str] = []
    # $x := pipe   |   $k, $v := pipe (range only)   |   $x = pipe
    if len(toks) >= 2 and toks[0].startswith("$") and toks[1] in (":=", "="):
        decl = [toks[0]]
        toks = toks[2:]
    elif allow_two and len(toks) >= 4 and toks[0].startswith("$") and toks[1] == "," \
            and toks[2].startswith("$") and toks[3] in (":=", "="):
        decl = [toks[0], toks[2]]
        toks = toks[4:]
    cmds, rest = _parse_cmds(toks, src, pos)
    if rest:
        raise TemplateError(f"template: :{line_of(src, pos)}: unexpected {rest[0]!r}")
    if not cmds:
        raise TemplateError(f"template: :{line_of(src, pos)}: missing value for command")
    return Pipe(decl, cmds)


def _parse_cmds(toks: list[str], src: str, pos: int) -> tuple[list[list[Any]], list[str]]:
    cmds: list[list[Any]] = []
    cur: list[Any] = []
    i = 0
    while i < len(toks):
        t = toks[i]
        if t == "|":
            if not cur:
                raise TemplateError(f"template: :{line_of(src, pos)}: missing command before '|'")
            cmds.append(cur)
            cur = []
            i += 1
            continue
        if t == ")":
            break
        if t == "(":
            depth, j = 1, i + 1
            while j < len(toks) and depth:
                depth += {"(": 1, ")": -1}.get(toks[j], 0)
                j += 1
            if depth:
                raise TemplateError(f"template: :{line_of(src, pos)}: unclosed left paren")
            inner, _ = _parse_cmds(toks[i + 1:j - 1], src, pos)
            names: list[str] = []
            if j < len(toks) and toks[j].startswith(".") and toks[j] != ".":
                names = toks[j][1:].split(".")
                j += 1
            cur.append(("pipe", Pipe([], inner), names))
            i = j
            continue
        cur.append(_operand(t, src, pos))
        i += 1
    if cur:
        cmds.append(cur)
    return cmds, toks[i:]


def _operand(t: str, src: str, pos: int) -> tuple:
    if t == ".":
        return ("field", [])
    if t.startswith("."):
        return ("field", t[1:].split("."))
    if t.startswith("$"):
        name, *names = t.split(".")
        return ("var", name, names)
    if t[0] == '"':
        try:
            return ("lit", json.loads(t))
        except ValueError:
            return ("lit", _unescape(t, src, pos))
    if t[0] == "`":
        return ("lit", t[1:-1])
    if t[0] == "'":
        return ("lit", ord(_unescape(t, src, pos)))
    if t in ("true", "false"):
        return ("lit", t == "true")
    if t == "nil":
        return ("lit", None)
    if re.match(r"^[-+]?\d", t):
        return ("lit", float(t) if any(c in t for c in ".eE") else int(t))
    if t in (":=", "=", ","):
        raise TemplateError(f"template: :{line_of(src, pos)}: unexpected {t!r}")
    if "." in t:
        raise TemplateError(f"template: :{line_of(src, pos)}: unexpected {t!r}")
    return ("ident", t)


def _unescape(t: str, src: str, pos: int) -> str:
    """A quoted literal's body; a bad escape (backslash-x) or a character literal not one
    character ('é' here) is a TemplateError (found by tests/fuzz/test_fuzz_templates.py)."""
    bad = TemplateError(f"template: :{line_of(src, pos)}: bad literal {t}")
    try:
        with warnings.catch_warnings():
            # Python only warns about an unknown escape ("\\q"); Go refuses it.
            warnings.simplefilter("error", DeprecationWarning)
            v = t[1:-1].encode().decode("unicode_escape")
    except (UnicodeDecodeError, DeprecationWarning):
        raise bad from None
    if t[0] == "'" and len(v) != 1:
        raise bad
    return v

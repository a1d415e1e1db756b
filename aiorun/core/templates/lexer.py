"""Lexing a template: text between actions, and each ``{{ ... }}`` action's tokens (with the
trim markers ``{{-``/``-}}`` applied and comments dropped)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from aiorun.core.templates.values import TemplateError


@dataclass
class Text:
    text: str


@dataclass
class Action:
    tokens: list[str]
    pos: int


_TOKEN_RE = re.compile(r"""
    (?P<ws>\s+)
  | (?P<str>"(?:[^"\\]|\\.)*")
  | (?P<raw>`[^`]*`)
  | (?P<char>'(?:[^'\\]|\\.)')
  | (?P<decl>:=)
  | (?P<assign>=)
  | (?P<num>[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)
  | (?P<field>(?:\.[A-Za-z_][A-Za-z0-9_]*)+|\.)
  | (?P<var>\$[A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<punct>[|(),])
  | (?P<pfield>\)(?:\.[A-Za-z_][A-Za-z0-9_]*)+)
""", re.X)


def lex(src: str) -> list[Text | Action]:
    out: list[Text | Action] = []
    i = 0
    while True:
        j = src.find("{{", i)
        if j < 0:
            out.append(Text(src[i:]))
            break
        text = src[i:j]
        start = j + 2
        if src.startswith("-", start) and start + 1 < len(src) and src[start + 1] in " \t\r\n":
            text = text.rstrip(" \t\r\n")
            start += 1
        out.append(Text(text))
        if src[start:].lstrip(" ").startswith("/*"):
            end = src.find("*/", start)
            if end < 0:
                raise TemplateError("template: unclosed comment")
            k = src.find("}}", end)
            if k < 0:
                raise TemplateError("template: unclosed action")
            trim = src[end + 2:k].strip() == "-"
            i = k + 2
            if trim:
                i = _skip_ws(src, i)
            continue
        k = _find_close(src, start)
        if k < 0:
            raise TemplateError(f"template: :{line_of(src, j)}: unclosed action")
        body = src[start:k]
        trim_right = False
        if body.endswith("-") and len(body) >= 2 and body[-2] in " \t\r\n":
            body = body[:-1]
            trim_right = True
        out.append(Action(_tokenize(body, src, j), j))
        i = k + 2
        if trim_right:
            i = _skip_ws(src, i)
    return out


def _skip_ws(src: str, i: int) -> int:
    while i < len(src) and src[i] in " \t\r\n":
        i += 1
    return i


def line_of(src: str, pos: int) -> int:
    return src.count("\n", 0, pos) + 1


def _find_close(src: str, i: int) -> int:
    """The index of the ``}}`` closing an action, skipping string literals."""
    while i < len(src):
        c = src[i]
        if c in "\"`'":
            q = c
            i += 1
            while i < len(src) and src[i] != q:
                i += 2 if src[i] == "\\" and q != "`" else 1
            i += 1
            continue
        if src.startswith("}}", i):
            return i
        i += 1
    return -1


def _tokenize(body: str, src: str, pos: int) -> list[str]:
    toks: list[str] = []
    i = 0
    while i < len(body):
        m = _TOKEN_RE.match(body, i)
        if not m:
            raise TemplateError(f"template: :{line_of(src, pos)}: unexpected {body[i:]!r} "
                                "in action")
        if m.lastgroup == "pfield":
            toks.append(")")
            toks.append(m.group()[1:])
        elif m.lastgroup != "ws":
            toks.append(m.group())
        i = m.end()
    return toks

"""The line layer of BuildKit's Dockerfile parser: physical lines → logical instruction lines.

* Only ``\\n`` ends a line (a trailing run of ``\\r``/``\\n`` is trimmed from each): a form
  feed, vertical tab or U+2028 inside a line is just a character.
* Parser directives (``# escape=``, ``# syntax=``, ``# check=``) are read from the top, until
  the first line that is not one; each may appear once.
* A line ending in the escape token (then only spaces/tabs) continues on the next one, unless
  that token is itself escaped (``\\\\`` at the end is not a continuation — BuildKit's rule:
  the token must follow a character that is not the token, or stand alone). Comment lines
  and blank lines inside a continued instruction are skipped.
* Heredocs: after a RUN/COPY/ADD line (also as an ONBUILD trigger, never in JSON form) that
  names ``<<WORD`` / ``<<-WORD`` / ``<<"WORD"``..., the following lines up to a line equal
  to ``WORD`` (leading tabs ignored for ``<<-``) are that heredoc's content, one heredoc
  after the other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

_DIRECTIVE = re.compile(r"^([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_DIRECTIVES = ("syntax", "escape", "check")
_HEREDOC = re.compile(r"^(\d*)<<(-?)([^<]*)$")
_LEADING_TABS = re.compile(r"^\t+", re.M)


class LineError(Exception):
    """A problem found by the line layer; ``line`` is 1-based."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


@dataclass
class Heredoc:
    """One heredoc: its delimiter ``name``, whether its content gets variable expansion
    (unquoted delimiter), whether leading tabs are stripped (``<<-``), and the content (its
    lines with their line ends)."""

    name: str
    expand: bool = True
    chomp: bool = False
    content: str = ""
    fd: int = 0

    def text(self) -> str:
        """The content with ``<<-`` tab stripping applied."""
        return _LEADING_TABS.sub("", self.content) if self.chomp else self.content


@dataclass
class Logical:
    """A logical line: the joined text, its first and last physical line."""

    text: str
    start: int
    end: int
    heredocs: list[Heredoc]


def _physical(text: str) -> tuple[list[str], list[str]]:
    r"""``(lines, raw)``: split on ``\n`` only; ``lines`` without their trailing run of
    ``\r``/``\n`` (``\r\n`` files work), ``raw`` with their line end (heredoc content)."""
    if text.startswith("\ufeff"):
        text = text[1:]
    pieces = text.split("\n")
    raw = [p + "\n" for p in pieces[:-1]] + ([pieces[-1]] if pieces[-1] else [])
    return [r.rstrip("\r\n") for r in raw], raw


def _is_comment(line: str) -> bool:
    return line.lstrip().startswith("#")


def _continues(line: str, escape: str) -> tuple[str, bool]:
    """``(line without the continuation token, True)`` if it continues, else ``(line,
    False)``. The token must stand alone or follow a character that is not the token."""
    stripped = line.rstrip(" \t")
    if not stripped.endswith(escape):
        return line, False
    body = stripped[:-1]
    if body == "" or not body.endswith(escape):
        return body, True
    return line, False


def heredoc_from_word(word: str) -> Heredoc | None:
    """The heredoc a word like ``<<EOF``, ``<<-"EOF"``, ``3<<'E'`` opens, or None."""
    m = _HEREDOC.match(word)
    if not m or not m.group(3):
        return None
    rest = m.group(3)
    name = unquote(rest)
    if not name:
        return None
    return Heredoc(name=name, expand=not ("'" in rest or '"' in rest),
                   chomp=m.group(2) == "-", fd=int(m.group(1) or 0))


def unquote(word: str) -> str | None:
    """Shell quote removal without expansion (``'a'b"c"`` → ``abc``); None if unbalanced."""
    out: list[str] = []
    i, n = 0, len(word)
    while i < n:
        c = word[i]
        if c in ("'", '"'):
            j = word.find(c, i + 1)
            if j < 0:
                return None
            out.append(word[i + 1:j])
            i = j + 1
        elif c == "\\" and i + 1 < n:
            out.append(word[i + 1])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def raw_words(line: str) -> list[str]:
    """Whitespace-separated words, quotes and backslashes kept (heredoc detection)."""
    words: list[str] = []
    cur: list[str] = []
    quote = ""
    i = 0
    while i < len(line):
        c = line[i]
        if quote:
            cur.append(c)
            if c == "\\" and quote == '"' and i + 1 < len(line):
                cur.append(line[i + 1])
                i += 1
            elif c == quote:
                quote = ""
        elif c.isspace():
            if cur:
                words.append("".join(cur))
                cur = []
        else:
            cur.append(c)
            if c in ("'", '"'):
                quote = c
            elif c == "\\" and i + 1 < len(line):
                cur.append(line[i + 1])
                i += 1
        i += 1
    if cur:
        words.append("".join(cur))
    return words


def logical_lines(text: str, wants_heredocs: Callable[[str], bool]
                  ) -> tuple[str, list[Logical]]:
    """``(escape token, logical lines)`` of a Dockerfile. ``wants_heredocs(line)`` says
    whether an instruction line may carry heredocs (RUN/COPY/ADD, not JSON form)."""
    lines, raw = _physical(text)
    escape = "\\"
    seen: set[str] = set()
    directives_done = False
    out: list[Logical] = []
    i = 0
    n = len(lines)

    def directive(line: str, lineno: int) -> None:
        nonlocal directives_done, escape
        if directives_done:
            return
        if not line.startswith("#"):
            directives_done = True
            return
        m = _DIRECTIVE.match(line[1:].lstrip())
        if not m or m.group(1).lower() not in _DIRECTIVES:
            directives_done = True
            return
        name = m.group(1).lower()
        if name in seen:
            raise LineError(f"only one {name} parser directive can be used", lineno)
        seen.add(name)
        if name == "escape":
            if m.group(2) not in ("\\", "`"):
                raise LineError(f"invalid escape token '{m.group(2)}' does not match ` or \\",
                                lineno)
            escape = m.group(2)

    while i < n:
        first = lines[i].lstrip()
        directive(first, i + 1)
        i += 1
        start = i
        body = "" if _is_comment(first) else first
        body, cont = _continues(body, escape)
        if not cont and body == "":
            continue
        parts = [body]
        while cont and i < n:
            line = lines[i]
            directive(line, i + 1)
            i += 1
            if _is_comment(line):
                continue
            if not line.strip():
                continue   # empty continuation line (BuildKit warns; still accepted)
            line, cont = _continues(line, escape)
            parts.append(line)
        joined = "".join(parts)
        docs: list[Heredoc] = []
        if "<<" in joined and wants_heredocs(joined):
            for word in raw_words(joined):
                doc = heredoc_from_word(word)
                if doc is None:
                    continue
                content: list[str] = []
                while True:
                    if i >= n:
                        raise LineError("unterminated heredoc", start)
                    candidate = lines[i]
                    if doc.chomp:
                        candidate = candidate.lstrip("\t")
                    i += 1
                    if candidate == doc.name:
                        break
                    content.append(raw[i - 1])
                doc.content = "".join(content)
                docs.append(doc)
        out.append(Logical(joined, start, i, docs))
    return escape, out

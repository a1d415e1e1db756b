"""Docker's shell-like word expansion for Dockerfile instructions (BuildKit's shell lexer, the
part Dockerfiles need). Pure; re-exported by :mod:`aiorun.images.build.dockerfile`.

Quotes, escapes (the file's escape token: ``\\`` or a backtick), ``$VAR``, ``${VAR}``,
``${VAR:-word}`` ``${VAR-word}`` ``${VAR:+word}`` ``${VAR+word}``, ``${VAR:?msg}``
``${VAR?msg}`` (an error naming the variable), ``${VAR#pat}`` ``${VAR##pat}``
``${VAR%pat}`` ``${VAR%%pat}`` (shortest/longest prefix/suffix removed; ``pat`` a shell glob),
``${VAR/pat/repl}`` ``${VAR//pat/repl}`` (first/every match replaced).
:func:`expand_heredoc` expands a heredoc's content: variables only, quotes kept.
"""

from __future__ import annotations

import re
from typing import Mapping

from aiorun.errors import InvalidArgument


class _Lexer:
    """Docker's ShellLex, the part Dockerfiles need."""

    def __init__(self, text: str, env: Mapping[str, str], escape: str = "\\",
                 raw_quotes: bool = False) -> None:
        self.s = text
        self.i = 0
        self.env = env
        self.esc = escape
        self.raw_quotes = raw_quotes   # heredoc content: quotes are plain characters

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def next(self) -> str:
        ch = self.peek()
        self.i += 1
        return ch

    def words(self, split: bool) -> list[str]:
        words: list[str] = []
        cur: list[str] = []
        in_word = False
        while self.i < len(self.s):
            ch = self.next()
            if split and ch.isspace():
                if in_word:
                    words.append("".join(cur))
                    cur, in_word = [], False
                continue
            in_word = True
            if ch == "'" and not self.raw_quotes:
                cur.append(self._single())
            elif ch == '"' and not self.raw_quotes:
                cur.append(self._double())
            elif ch == "$":
                cur.append(self._dollar())
            elif ch == self.esc and self.raw_quotes:
                # heredoc content: only $ and the escape itself are escaped (as in sh)
                nxt = self.peek()
                cur.append(self.next() if nxt in ("$", self.esc) else ch)
            elif ch == self.esc:
                nxt = self.next()
                cur.append(nxt if nxt else self.esc)
            else:
                cur.append(ch)
        if in_word:
            words.append("".join(cur))
        return words

    def _single(self) -> str:
        out: list[str] = []
        while True:
            ch = self.next()
            if ch == "":
                raise InvalidArgument(f"unexpected end of statement while looking for matching "
                                      f"single-quote in {self.s!r}")
            if ch == "'":
                return "".join(out)
            out.append(ch)

    def _double(self) -> str:
        out: list[str] = []
        while True:
            ch = self.next()
            if ch == "":
                raise InvalidArgument(f"unexpected end of statement while looking for matching "
                                      f"double-quote in {self.s!r}")
            if ch == '"':
                return "".join(out)
            if ch == "$":
                out.append(self._dollar())
            elif ch == self.esc:
                nxt = self.peek()
                if nxt in ('"', "$", self.esc):
                    out.append(self.next())
                else:
                    out.append(ch)
            else:
                out.append(ch)

    def _name(self) -> str:
        start = self.i
        while self.i < len(self.s) and (self.s[self.i].isalnum() or self.s[self.i] == "_"):
            self.i += 1
        return self.s[start:self.i]

    def _dollar(self) -> str:
        ch = self.peek()
        if ch == "{":
            self.next()
            name = self._name()
            if not name:
                raise InvalidArgument(f"bad substitution in {self.s!r}")
            ch = self.next()
            val = self.env.get(name)
            if ch == "":
                raise InvalidArgument(f"syntax error: missing '}}' in substitution in {self.s!r}")
            if ch == "}":
                return val or ""
            colon = False
            if ch == ":":
                colon = True
                ch = self.next()
                if ch not in ("-", "+", "?"):
                    raise InvalidArgument(f"unsupported modifier (:{ch}) in substitution "
                                          f"in {self.s!r}")
            if ch in ("-", "+", "?"):
                word = self._until_brace()
                is_set = val is not None and (val != "" or not colon)
                if ch == "-":
                    return val if is_set and val is not None else word
                if ch == "+":
                    return word if is_set else ""
                if not is_set:
                    raise InvalidArgument(f"{name}: {word or 'is not allowed to be unset'}")
                return val or ""
            if ch in ("#", "%"):
                longest = self.peek() == ch
                if longest:
                    self.next()
                pat = _glob(self._until_brace())
                return _trim(val or "", pat, prefix=ch == "#", longest=longest)
            if ch == "/":
                every = self.peek() == "/"
                if every:
                    self.next()
                pat = self._until_brace(stop="/")
                repl = self._until_brace() if self.s[self.i - 1] == "/" else ""
                if not pat:
                    return val or ""
                rx = re.compile(_glob(pat), re.S)
                return rx.sub(lambda m: repl, val or "", count=0 if every else 1)
            raise InvalidArgument(f"unsupported modifier ({ch!r}) in substitution "
                                  f"in {self.s!r}")
        name = self._name()
        if not name:
            return "$"
        return self.env.get(name, "")

    def _until_brace(self, stop: str = "}") -> str:
        """The (expanded) word up to the closing ``}`` (or ``stop``); consumes that char."""
        out = []
        depth = 0
        while True:
            ch = self.next()
            if ch == "":
                raise InvalidArgument(f"missing '}}' in substitution in {self.s!r}")
            if (ch == "}" or ch == stop) and depth == 0:
                break
            if ch == "$":
                out.append(self._dollar())
                continue
            if ch == self.esc and self.peek():
                out.append(self.next())
                continue
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            out.append(ch)
        return "".join(out)


def _glob(pat: str) -> str:
    """A shell pattern (``*``, ``?``, ``[...]``) as a regular expression."""
    out, i = [], 0
    while i < len(pat):
        c = pat[i]
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[" and "]" in pat[i + 2:]:
            j = pat.index("]", i + 2)
            body = pat[i + 1:j]
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = j
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def _trim(val: str, pat: str, prefix: bool, longest: bool) -> str:
    """``val`` without its shortest/longest prefix (or suffix) matching ``pat``."""
    rx = re.compile(pat, re.S)
    cuts = range(len(val), -1, -1) if longest else range(len(val) + 1)
    for n in cuts:
        part = val[:n] if prefix else val[len(val) - n:]
        if rx.fullmatch(part):
            return val[n:] if prefix else val[:len(val) - n]
    return val


def expand_word(text: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """One word: quotes removed, escapes and variables processed, whitespace kept."""
    return "".join(_Lexer(text, env, escape).words(split=False))


def expand_words(text: str, env: Mapping[str, str], escape: str = "\\") -> list[str]:
    """Whitespace-separated words, each processed like :func:`expand_word`."""
    return _Lexer(text, env, escape).words(split=True)


def expand_heredoc(text: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """A heredoc's content with its variables expanded; quotes are kept as written."""
    return "".join(_Lexer(text, env, escape, raw_quotes=True).words(split=False))

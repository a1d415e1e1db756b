"""Docker's shell-like word expansion for Dockerfile instructions (its ShellLex, the part
Dockerfiles need): quotes, backslash escapes, ``$VAR``, ``${VAR}``, ``${VAR:-word}``,
``${VAR-word}``, ``${VAR:+word}``, ``${VAR+word}``. Pure; re-exported by
:mod:`aiorun.images.build.dockerfile`."""

from __future__ import annotations

from typing import Mapping

from aiorun.errors import InvalidArgument


class _Lexer:
    """Docker's ShellLex, the part Dockerfiles need."""

    def __init__(self, text: str, env: Mapping[str, str], escape: str = "\\") -> None:
        self.s = text
        self.i = 0
        self.env = env
        self.esc = escape

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
            if ch == "'":
                cur.append(self._single())
            elif ch == '"':
                cur.append(self._double())
            elif ch == "$":
                cur.append(self._dollar())
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
            if ch == "}":
                return self.env.get(name, "")
            colon = False
            if ch == ":":
                colon = True
                ch = self.next()
            if ch not in ("-", "+"):
                raise InvalidArgument(f"unsupported modifier ({ch!r}) in substitution "
                                      f"in {self.s!r}")
            word = self._until_brace()
            val = self.env.get(name)
            is_set = val is not None and (val != "" or not colon)
            if ch == "-":
                return val if is_set else word  # type: ignore[return-value]
            return word if is_set else ""
        name = self._name()
        if not name:
            return "$"
        return self.env.get(name, "")

    def _until_brace(self) -> str:
        out = []
        depth = 0
        while True:
            ch = self.next()
            if ch == "":
                raise InvalidArgument(f"missing '}}' in substitution in {self.s!r}")
            if ch == "}" and depth == 0:
                break
            if ch == "$" :
                out.append(self._dollar())
                continue
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            out.append(ch)
        return "".join(out)


def expand_word(text: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """One word: quotes removed, escapes and variables processed, whitespace kept."""
    return "".join(_Lexer(text, env, escape).words(split=False))


def expand_words(text: str, env: Mapping[str, str], escape: str = "\\") -> list[str]:
    """Whitespace-separated words, each processed like :func:`expand_word`."""
    return _Lexer(text, env, escape).words(split=True)

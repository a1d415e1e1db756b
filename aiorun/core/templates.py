"""A subset of Go's text/template, for ``--format`` the way docker users write it.

Supported: field chains on dicts (``{{.State.Pid}}``, ``{{ .Config.Env }}``), ``.`` and ``$``,
variables (``{{$x := .Id}}``, ``{{range $k, $v := .Labels}}``), pipelines (``{{.Names |
upper}}``), parenthesised pipelines, ``if/else if/else``, ``range`` (lists, maps in key order,
``{{else}}``), ``with``, trim markers ``{{-``/``-}}``, comments, and the functions docker
templates use: json, index, printf, print, println, len, join, split, lower, upper, title,
truncate, pad, eq, ne, lt, le, gt, ge, not, and, or.

Values print as Go does: ``<no value>`` for a missing map key, ``<nil>``, ``true``,
``[a b]`` for lists and ``map[k:v]`` for maps. A ``table`` prefix (``table {{.ID}}\t{{.Names}}``)
is handled by :func:`render_table`, which adds a header row and aligns tab-separated cells
like Go's tabwriter with docker's settings (minwidth 10, padding 3).

Errors raise :class:`~aiorun.errors.InvalidArgument` with ``template: ...`` messages.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from aiorun.errors import InvalidArgument


class TemplateError(InvalidArgument):
    pass


class _Missing:
    """A missing map key: prints as ``<no value>``, is false, and is nil for functions."""

    def __repr__(self) -> str:
        return "<no value>"


MISSING = _Missing()


# ============================================================================ lexer

@dataclass
class _Text:
    text: str


@dataclass
class _Action:
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


def _lex(src: str) -> list[_Text | _Action]:
    out: list[_Text | _Action] = []
    i = 0
    while True:
        j = src.find("{{", i)
        if j < 0:
            out.append(_Text(src[i:]))
            break
        text = src[i:j]
        start = j + 2
        if src.startswith("-", start) and start + 1 < len(src) and src[start + 1] in " \t\r\n":
            text = text.rstrip(" \t\r\n")
            start += 1
        out.append(_Text(text))
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
            raise TemplateError(f"template: :{_line(src, j)}: unclosed action")
        body = src[start:k]
        trim_right = False
        if body.endswith("-") and len(body) >= 2 and body[-2] in " \t\r\n":
            body = body[:-1]
            trim_right = True
        out.append(_Action(_tokenize(body, src, j), j))
        i = k + 2
        if trim_right:
            i = _skip_ws(src, i)
    return out


def _skip_ws(src: str, i: int) -> int:
    while i < len(src) and src[i] in " \t\r\n":
        i += 1
    return i


def _line(src: str, pos: int) -> int:
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
            raise TemplateError(f"template: :{_line(src, pos)}: unexpected {body[i:]!r} "
                                "in action")
        if m.lastgroup == "pfield":
            toks.append(")")
            toks.append(m.group()[1:])
        elif m.lastgroup != "ws":
            toks.append(m.group())
        i = m.end()
    return toks


# ============================================================================ parser

@dataclass
class _Node:
    pass


@dataclass
class _Pipe:
    decl: list[str]                   # variables declared (:=) or assigned (=)
    cmds: list[list[Any]]             # each command: operands (see _operand)


@dataclass
class _Out(_Node):
    pipe: _Pipe


@dataclass
class _Block(_Node):
    kind: str                         # if / range / with
    pipe: _Pipe
    body: list[Any] = field(default_factory=list)
    orelse: list[Any] = field(default_factory=list)


# operands are tuples: ("field", [names]) on dot, ("var", name, [names]), ("lit", value),
# ("ident", name), ("pipe", _Pipe, [names])


def _parse(src: str) -> list[Any]:
    items = _lex(src)
    pos = 0

    def parse_list(stop: tuple[str, ...]) -> tuple[list[Any], str, _Action | None]:
        nonlocal pos
        nodes: list[Any] = []
        while pos < len(items):
            it = items[pos]
            pos += 1
            if isinstance(it, _Text):
                if it.text:
                    nodes.append(it)
                continue
            toks = it.tokens
            if not toks:
                raise TemplateError(f"template: :{_line(src, it.pos)}: missing value for command")
            kw = toks[0]
            if kw in ("end", "else"):
                if kw not in stop:
                    raise TemplateError(f"template: :{_line(src, it.pos)}: unexpected {{{{{kw}}}}}")
                return nodes, kw, it
            if kw in ("if", "range", "with"):
                nodes.append(parse_block(kw, toks[1:], it.pos))
                continue
            if kw in ("define", "template", "block"):
                raise TemplateError(f"template: {{{{{kw}}}}} is not supported")
            nodes.append(_Out(_parse_pipe(toks, src, it.pos, False)))
        if stop:
            raise TemplateError("template: unexpected EOF (missing {{end}})")
        return nodes, "", None

    def parse_block(kind: str, toks: list[str], at: int) -> _Block:
        blk = _Block(kind, _parse_pipe(toks, src, at, kind == "range"))
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


def _parse_pipe(toks: list[str], src: str, pos: int, allow_two: bool) -> _Pipe:
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
        raise TemplateError(f"template: :{_line(src, pos)}: unexpected {rest[0]!r}")
    if not cmds:
        raise TemplateError(f"template: :{_line(src, pos)}: missing value for command")
    return _Pipe(decl, cmds)


def _parse_cmds(toks: list[str], src: str, pos: int) -> tuple[list[list[Any]], list[str]]:
    cmds: list[list[Any]] = []
    cur: list[Any] = []
    i = 0
    while i < len(toks):
        t = toks[i]
        if t == "|":
            if not cur:
                raise TemplateError(f"template: :{_line(src, pos)}: missing command before '|'")
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
                raise TemplateError(f"template: :{_line(src, pos)}: unclosed left paren")
            inner, _ = _parse_cmds(toks[i + 1:j - 1], src, pos)
            names: list[str] = []
            if j < len(toks) and toks[j].startswith(".") and toks[j] != ".":
                names = toks[j][1:].split(".")
                j += 1
            cur.append(("pipe", _Pipe([], inner), names))
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
        raise TemplateError(f"template: :{_line(src, pos)}: unexpected {t!r}")
    if "." in t:
        raise TemplateError(f"template: :{_line(src, pos)}: unexpected {t!r}")
    return ("ident", t)


def _unescape(t: str, src: str, pos: int) -> str:
    """A quoted literal's body; a bad escape (backslash-x) or a character literal not one
    character ('é' here) is a TemplateError (found by tests/fuzz/test_fuzz_templates.py)."""
    bad = TemplateError(f"template: :{_line(src, pos)}: bad literal {t}")
    try:
        v = t[1:-1].encode().decode("unicode_escape")
    except UnicodeDecodeError:
        raise bad from None
    if t[0] == "'" and len(v) != 1:
        raise bad
    return v


# ============================================================================ values

def go_str(v: Any) -> str:
    """How Go's fmt prints a value with %v."""
    if v is MISSING:
        return "<no value>"
    if v is None:
        return "<nil>"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, float):
        # Go's %v uses the shortest repr, switching to exponent form at 1e21
        if v.is_integer() and abs(v) < 1e21:
            return str(int(v))
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + " ".join(go_str(x) for x in v) + "]"
    if isinstance(v, dict):
        return "map[" + " ".join(f"{go_str(k)}:{go_str(v[k])}" for k in sorted(v, key=str)) + "]"
    return str(v)


def truth(v: Any) -> bool:
    if v is MISSING or v is None:
        return False
    if isinstance(v, (bool, int, float, str, list, tuple, dict)):
        return bool(v)
    return True


def _field(v: Any, names: list[str], what: str) -> Any:
    for n in names:
        if v is MISSING or v is None:
            return MISSING if v is MISSING else _nil_field(n, what)
        if isinstance(v, dict):
            v = v.get(n, MISSING)
        elif hasattr(v, n) and not n.startswith("_"):
            v = getattr(v, n)
            if callable(v):
                v = v()
        else:
            raise TemplateError(f"template: executing {what!r} at <.{n}>: can't evaluate field "
                                f"{n} in type {type(v).__name__}")
    return v


def _nil_field(n: str, what: str) -> Any:
    raise TemplateError(f"template: executing {what!r} at <.{n}>: nil pointer evaluating "
                        f"interface {{}}.{n}")


# ============================================================================ functions

_FMT_RE = re.compile(r"%([-+# 0]*)(\d+|\*)?(?:\.(\d+))?([vsdqfegxXtTcob%])")


def go_sprintf(fmt: str, *args: Any) -> str:
    it = iter(args)
    out = []
    last = 0
    for m in _FMT_RE.finditer(fmt):
        out.append(fmt[last:m.start()])
        last = m.end()
        flags, width, prec, verb = m.groups()
        if verb == "%":
            out.append("%")
            continue
        try:
            a = next(it)
        except StopIteration:
            out.append(f"%!{verb}(MISSING)")
            continue
        if verb in ("v", "s"):
            s = go_str(a)
            if prec:
                s = s[:int(prec)]
        elif verb == "q":
            s = json.dumps(go_str(a) if not isinstance(a, str) else a)
        elif verb == "d":
            s = str(int(a)) if isinstance(a, (int, float)) and not isinstance(a, bool) \
                else f"%!d({go_str(a)})"
        elif verb in ("f", "e", "g"):
            s = format(float(a), f".{prec or 6}{verb}") if verb != "g" else go_str(float(a))
        elif verb in ("x", "X"):
            s = format(int(a), verb) if isinstance(a, int) else \
                (a.encode().hex() if verb == "x" else a.encode().hex().upper())
        elif verb == "t":
            s = go_str(bool(a))
        elif verb == "T":
            s = type(a).__name__
        elif verb == "c":
            s = chr(int(a))
        elif verb == "o":
            s = format(int(a), "o")
        else:
            s = format(int(a), "b")
        if width and width != "*":
            w = int(width)
            if "-" in flags:
                s = s.ljust(w)
            elif "0" in flags and verb in "dfeg":
                s = s.rjust(w, "0")
            else:
                s = s.rjust(w)
        out.append(s)
    out.append(fmt[last:])
    extra = list(it)
    if extra:
        out.append("%!(EXTRA " + ", ".join(f"{type(a).__name__}={go_str(a)}" for a in extra)
                   + ")")
    return "".join(out)


def _go_print(*args: Any) -> str:
    # Go's Sprint adds spaces between operands when neither side is a string
    out = []
    for i, a in enumerate(args):
        if i and not isinstance(a, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(go_str(a))
    return "".join(out)


def _json(v: Any) -> str:
    if v is MISSING:
        v = None
    s = json.dumps(v, separators=(",", ":"), ensure_ascii=False, default=str)
    # Go's encoder escapes HTML-significant characters
    return s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _index(v: Any, *keys: Any) -> Any:
    for k in keys:
        if isinstance(v, dict):
            v = v.get(k, MISSING)
        elif isinstance(v, (list, tuple, str)):
            if not isinstance(k, int) or not -1 < k < len(v):
                raise TemplateError(f"template: error calling index: index out of range: {k}")
            v = v[k]
        elif v is None or v is MISSING:
            raise TemplateError("template: error calling index: index of untyped nil")
        else:
            raise TemplateError(f"template: error calling index: can't index item of type "
                                f"{type(v).__name__}")
    return v


def _len(v: Any) -> int:
    if isinstance(v, (list, tuple, dict, str)):
        return len(v)
    raise TemplateError(f"template: error calling len: len of type {type(v).__name__}")


def _cmp(op: Callable[[Any, Any], bool]) -> Callable[..., bool]:
    def f(a: Any, *bs: Any) -> bool:
        a = None if a is MISSING else a
        return all(op(a, None if b is MISSING else b) for b in bs) if bs else op(a, None)
    return f


def _truncate(s: Any, n: int) -> str:
    s = go_str(s)
    return s[:n] if len(s) > n else s


def _title(s: Any) -> str:
    return re.sub(r"(^|\s)(\S)", lambda m: m.group(1) + m.group(2).upper(), go_str(s))


FUNCS: dict[str, Callable[..., Any]] = {
    "json": _json,
    "index": _index,
    "printf": lambda fmt, *a: go_sprintf(go_str(fmt), *a),
    "print": _go_print,
    "println": lambda *a: " ".join(go_str(x) for x in a) + "\n",
    "len": _len,
    "join": lambda lst, sep: go_str(sep).join(go_str(x) for x in (lst or [])),
    "split": lambda s, sep: go_str(s).split(go_str(sep)),
    "lower": lambda s: go_str(s).lower(),
    "upper": lambda s: go_str(s).upper(),
    "title": _title,
    "truncate": _truncate,
    "pad": lambda s, left, right: " " * int(left) + go_str(s) + " " * int(right),
    "eq": _cmp(lambda a, b: a == b),
    "ne": _cmp(lambda a, b: a != b),
    "lt": _cmp(lambda a, b: a < b),
    "le": _cmp(lambda a, b: a <= b),
    "gt": _cmp(lambda a, b: a > b),
    "ge": _cmp(lambda a, b: a >= b),
    "not": lambda a: not truth(a),
    "and": lambda *a: next((x for x in a if not truth(x)), a[-1]),
    "or": lambda *a: next((x for x in a if truth(x)), a[-1]),
}


# ============================================================================ execution

class Template:
    """A parsed template; :meth:`render` it against any JSON-like value."""

    def __init__(self, src: str, funcs: dict[str, Callable[..., Any]] | None = None) -> None:
        self.src = src
        self.funcs = {**FUNCS, **(funcs or {})}
        self.nodes = _parse(src)

    def render(self, data: Any) -> str:
        out: list[str] = []
        self._run(self.nodes, data, [{"$": data}], out)
        return "".join(out)

    # -- internals -------------------------------------------------------------------
    def _run(self, nodes: list[Any], dot: Any, scopes: list[dict[str, Any]],
             out: list[str]) -> None:
        for n in nodes:
            if isinstance(n, _Text):
                out.append(n.text)
            elif isinstance(n, _Out):
                v = self._pipe(n.pipe, dot, scopes)
                if not n.pipe.decl:
                    out.append(go_str(v))
            elif n.kind == "if":
                inner = scopes + [{}]
                v = self._pipe(n.pipe, dot, inner)
                self._run(n.body if truth(v) else n.orelse, dot, inner, out)
            elif n.kind == "with":
                inner = scopes + [{}]
                v = self._pipe(n.pipe, dot, inner)
                if truth(v):
                    self._run(n.body, v, inner, out)
                else:
                    self._run(n.orelse, dot, inner, out)
            else:
                self._range(n, dot, scopes, out)

    def _range(self, n: _Block, dot: Any, scopes: list[dict[str, Any]], out: list[str]) -> None:
        pipe = _Pipe([], n.pipe.cmds)
        v = self._pipe(pipe, dot, scopes)
        if isinstance(v, dict):
            pairs = [(k, v[k]) for k in sorted(v, key=str)]
        elif isinstance(v, (list, tuple)):
            pairs = list(enumerate(v))
        elif isinstance(v, int) and not isinstance(v, bool):
            pairs = [(i, i) for i in range(v)]
        elif v is None or v is MISSING:
            pairs = []
        else:
            raise TemplateError(f"template: range can't iterate over {go_str(v)}")
        if not pairs:
            self._run(n.orelse, dot, scopes + [{}], out)
            return
        for k, item in pairs:
            inner = scopes + [{}]
            if len(n.pipe.decl) == 2:
                inner[-1][n.pipe.decl[0]] = k
                inner[-1][n.pipe.decl[1]] = item
            elif len(n.pipe.decl) == 1:
                inner[-1][n.pipe.decl[0]] = item
            self._run(n.body, item, inner, out)

    def _lookup(self, name: str, scopes: list[dict[str, Any]]) -> Any:
        for s in reversed(scopes):
            if name in s:
                return s[name]
        raise TemplateError(f"template: undefined variable: {name}")

    def _pipe(self, pipe: _Pipe, dot: Any, scopes: list[dict[str, Any]]) -> Any:
        v: Any = MISSING
        first = True
        for cmd in pipe.cmds:
            v = self._cmd(cmd, dot, scopes, None if first else (v,))
            first = False
        if pipe.decl:
            name = pipe.decl[0]
            # "=" assigns an existing variable, ":=" declares in the innermost scope
            for s in reversed(scopes):
                if name in s:
                    s[name] = v
                    break
            else:
                scopes[-1][name] = v
        return v

    def _cmd(self, cmd: list[Any], dot: Any, scopes: list[dict[str, Any]],
             piped: tuple[Any, ...] | None) -> Any:
        head = cmd[0]
        if head[0] == "ident":
            fn = self.funcs.get(head[1])
            if fn is None:
                raise TemplateError(f'template: function "{head[1]}" not defined')
            args = [self._arg(a, dot, scopes) for a in cmd[1:]]
            if piped:
                args.extend(piped)
            try:
                return fn(*args)
            except TemplateError:
                raise
            except TypeError as exc:
                raise TemplateError(f"template: wrong number of args for {head[1]}: {exc}") \
                    from None
            except Exception as exc:
                raise TemplateError(f"template: error calling {head[1]}: {exc}") from None
        if len(cmd) > 1 or piped:
            raise TemplateError(f"template: can't give argument to non-function "
                                f"{self._describe(head)}")
        return self._arg(head, dot, scopes)

    def _arg(self, a: tuple, dot: Any, scopes: list[dict[str, Any]]) -> Any:
        kind = a[0]
        if kind == "lit":
            return a[1]
        if kind == "field":
            return _field(dot, a[1], self.src)
        if kind == "var":
            return _field(self._lookup(a[1], scopes), a[2], self.src)
        if kind == "pipe":
            return _field(self._pipe(a[1], dot, scopes), a[2], self.src)
        fn = self.funcs.get(a[1])
        if fn is None:
            raise TemplateError(f'template: function "{a[1]}" not defined')
        return self._cmd([a], dot, scopes, None)  # wrong arity: TemplateError, as there

    @staticmethod
    def _describe(op: tuple) -> str:
        if op[0] == "field":
            return "." + ".".join(op[1])
        if op[0] == "var":
            return ".".join([op[1], *op[2]])
        return go_str(op[1]) if op[0] == "lit" else "(pipeline)"


def render(src: str, data: Any) -> str:
    """Render one value (no ``table`` handling)."""
    return Template(src).render(data)


# ============================================================================ tables

def is_table(fmt: str) -> bool:
    return fmt.startswith("table ") or fmt == "table" or fmt.startswith("table\t")


def tabwrite(lines: Iterable[str], minwidth: int = 10, padding: int = 3) -> str:
    """Align tab-separated cells like Go's tabwriter (docker: minwidth 10, padding 3).

    A cell terminated by a tab belongs to an aligned column; the last cell of a line is not
    padded.
    """
    rows = [line.split("\t") for line in lines]
    widths: dict[int, int] = {}
    for r in rows:
        for i, cell in enumerate(r[:-1]):
            widths[i] = max(widths.get(i, 0), len(cell) + padding, minwidth)
    out = []
    for r in rows:
        cells = [c.ljust(widths[i]) for i, c in enumerate(r[:-1])] + r[-1:]
        out.append("".join(cells))
    return "\n".join(out) + ("\n" if out else "")


_HEADER_FIELD = re.compile(r"\{\{-?\s*(?:json\s+)?\.([A-Za-z_][A-Za-z0-9_]*)[^}]*\}\}")


def render_table(fmt: str, rows: Iterable[Any], headers: dict[str, str] | None = None,
                 header: bool = True) -> str:
    """Render ``fmt`` (with or without a ``table`` prefix) for each row.

    With the prefix, a header line is rendered by replacing each ``{{.Field}}`` with
    ``headers[Field]`` (default: the field name upper-cased) and the result is tab-aligned.
    Without it, one rendered line per row, unaligned (as docker does).
    """
    headers = headers or {}
    table = is_table(fmt)
    body = fmt[len("table"):].lstrip(" ") if table else fmt
    body = body.replace("\\t", "\t").replace("\\n", "\n")
    tpl = Template(body)
    lines = [tpl.render(r) for r in rows]
    if not table:
        return "".join(line + "\n" for line in lines)
    head = _HEADER_FIELD.sub(lambda m: headers.get(m.group(1), m.group(1).upper()), body)
    all_lines = ([head] if header else []) + lines
    return tabwrite("\n".join(all_lines).split("\n"))

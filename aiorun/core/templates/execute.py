"""Running a parsed template against a value: scopes of variables, pipelines, function calls
and field access (dict keys; attributes of other objects, as Go reaches struct fields)."""

from __future__ import annotations

from typing import Any, Callable

from aiorun.core.templates.functions import FUNCS
from aiorun.core.templates.lexer import Text
from aiorun.core.templates.parser import Block, Out, Pipe, parse
from aiorun.core.templates.values import MISSING, TemplateError, go_str, truth


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


class Template:
    """A parsed template; :meth:`render` it against any JSON-like value."""

    def __init__(self, src: str, funcs: dict[str, Callable[..., Any]] | None = None) -> None:
        self.src = src
        self.funcs = {**FUNCS, **(funcs or {})}
        self.nodes = parse(src)

    def render(self, data: Any) -> str:
        out: list[str] = []
        self._run(self.nodes, data, [{"$": data}], out)
        return "".join(out)

    # -- internals -------------------------------------------------------------------
    def _run(self, nodes: list[Any], dot: Any, scopes: list[dict[str, Any]],
             out: list[str]) -> None:
        for n in nodes:
            if isinstance(n, Text):
                out.append(n.text)
            elif isinstance(n, Out):
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

    def _range(self, n: Block, dot: Any, scopes: list[dict[str, Any]], out: list[str]) -> None:
        pipe = Pipe([], n.pipe.cmds)
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

    def _pipe(self, pipe: Pipe, dot: Any, scopes: list[dict[str, Any]]) -> Any:
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

"""The functions templates can call (``json``, ``printf``, ``join``, ``eq``, ...), as Go's
text/template and docker define them."""

from __future__ import annotations

import json
import re
from typing import Any, Callable

from aiorun.core.templates.values import MISSING, TemplateError, go_str, truth


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

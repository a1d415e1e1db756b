"""``table`` formats: a header row from the field names and cells aligned like Go's tabwriter
with docker's settings."""

from __future__ import annotations

import re
from typing import Any, Iterable

from aiorun.core.templates.execute import Template


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

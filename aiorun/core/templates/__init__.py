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

The pieces: :mod:`.lexer` → :mod:`.parser` → :mod:`.execute` (with the functions of
:mod:`.functions` and the value rules of :mod:`.values`); ``table`` output in :mod:`.tables`.
"""

from aiorun.core.templates.execute import Template, render
from aiorun.core.templates.functions import FUNCS, go_sprintf
from aiorun.core.templates.tables import is_table, render_table, tabwrite
from aiorun.core.templates.values import MISSING, TemplateError, go_str, truth

__all__ = ["FUNCS", "MISSING", "Template", "TemplateError", "go_sprintf", "go_str", "is_table",
           "render", "render_table", "tabwrite", "truth"]

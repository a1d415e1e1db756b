"""Fuzzing the Go-template renderer behind ``--format`` (:mod:`aiorun.core.templates`).

Property: any template text, and templates assembled from real template pieces (actions,
pipelines, functions with wrong arities and types, unbalanced blocks, trim markers), rendered
against arbitrary JSON-like data, with or without the ``table`` prefix, either render to a
string or raise :class:`~aiorun.core.templates.TemplateError`.

Budget: see ``fuzzing.py`` (``AIORUN_FUZZ_EXAMPLES`` raises the number of examples).
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from aiorun.core.templates import Template, TemplateError, render_table

from fuzzing import budget

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(),
              st.text(max_size=10)),
    lambda kids: st.one_of(st.lists(kids, max_size=4),
                           st.dictionaries(st.sampled_from(["ID", "Names", "State", "Labels",
                                                            "a", "b", "", "0"]), kids,
                                           max_size=4)),
    max_leaves=15)

_pieces = st.sampled_from([
    ".", ".ID", ".Names", ".State.Pid", ".Labels.a", ".a.b.c", "$", "$x", "$x := .ID", "$k, $v :=",
    "$x = 1", "|", "(", ")", ")", "json", "index", "printf", "print", "println", "len", "join",
    "split", "lower", "upper", "title", "truncate", "pad", "eq", "ne", "lt", "le", "gt", "ge",
    "not", "and", "or", "nosuchfn", "if", "else", "else if", "end", "range", "with", "define",
    "template", "block", "nil", "true", "false", "0", "-1", "1e400", "3.5", "99999999999999999999",
    '"%d %s %v %q %x %5.2f %-3s %*d %"', '"a"', '","', "`raw`", "'c'", "'\\n'", "'é'", "'\\é'", "'\\x'", "\"é\\x\"", '"\\x"', "/*",
    "*/", "-", " ", "\t", "\n",
])
actions = st.lists(_pieces, max_size=6).map(
    lambda ps: "{{" + " ".join(ps) + "}}")
templates = st.lists(st.one_of(actions, st.text(max_size=6),
                               st.sampled_from(["{{", "}}", "{{-", "-}}", "{{/*", "*/}}",
                                                "{{- ", " -}}", "\\t", "\\n"])),
                     max_size=8).map("".join)


def render_all(src: str, data) -> None:
    try:
        Template(src).render(data)
    except TemplateError:
        pass
    try:
        render_table("table " + src, [data, data])
        render_table(src, [data])
    except TemplateError:
        pass


@budget(300)
@given(st.text(max_size=200), json_values)
def test_arbitrary_text(src, data):
    render_all(src, data)


@budget(400)
@given(templates, json_values)
def test_assembled_templates(src, data):
    render_all(src, data)

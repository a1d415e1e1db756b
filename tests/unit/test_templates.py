import pytest

from aiorun.core.templates import Template, TemplateError, go_sprintf, render, render_table, tabwrite

DATA = {
    "Id": "abc123",
    "Name": "/web",
    "State": {"Pid": 42, "Running": True, "ExitCode": 0},
    "Config": {"Env": ["A=1", "B=2"], "Labels": {"b": "y", "a": "x"}, "Cmd": None},
    "NetworkSettings": {"IPAddress": "10.0.0.2",
                        "Networks": {"bridge": {"IPAddress": "10.0.0.2"}}},
}


@pytest.mark.parametrize("tpl,out", [
    ("{{.State.Pid}}", "42"),
    ("{{ .State.Pid }}", "42"),
    ("{{.NetworkSettings.IPAddress}}", "10.0.0.2"),
    ("{{json .Config.Labels}}", '{"b":"y","a":"x"}'),
    ("{{json .Config.Cmd}}", "null"),
    ("{{.Config.Cmd}}", "<nil>"),
    ("{{.Missing}}", "<no value>"),
    ("{{.State.Running}}", "true"),
    ("{{.Config.Env}}", "[A=1 B=2]"),
    ("{{.Config.Labels}}", "map[a:x b:y]"),
    ("{{range .Config.Env}}[{{.}}]{{end}}", "[A=1][B=2]"),
    ("{{range $k, $v := .Config.Labels}}{{$k}}={{$v}};{{end}}", "a=x;b=y;"),
    ("{{range $i, $e := .Config.Env}}{{$i}}{{end}}", "01"),
    ("{{range .Config.Cmd}}x{{else}}empty{{end}}", "empty"),
    ('{{index .Config.Labels "a"}}', "x"),
    ("{{index .Config.Env 1}}", "B=2"),
    ('{{(index .NetworkSettings.Networks "bridge").IPAddress}}', "10.0.0.2"),
    ("{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", "10.0.0.2"),
    ("{{if .State.Running}}up{{else}}down{{end}}", "up"),
    ("{{if eq .State.ExitCode 1}}a{{else if .State.Running}}b{{else}}c{{end}}", "b"),
    ("{{with .State}}{{.Pid}}{{end}}", "42"),
    ("{{$n := .Name}}{{$n}}", "/web"),
    ('{{printf "%s:%d" .Name .State.Pid}}', "/web:42"),
    ('{{printf "%-5s|" .Id}}', "abc123|"),
    ("{{.Name | upper}}", "/WEB"),
    ('{{join .Config.Env ","}}', "A=1,B=2"),
    ("{{len .Config.Env}}", "2"),
    ("a {{- .Id -}} b", "aabc123b"),
    ("{{/* comment */}}x", "x"),
    ("{{$.Id}}", "abc123"),
    ("{{not .State.Running}}", "false"),
    ("{{json .}}", None),
])
def test_render(tpl, out):
    got = render(tpl, DATA)
    if out is not None:
        assert got == out
    else:
        import json
        assert json.loads(got) == DATA


@pytest.mark.parametrize("tpl,msg", [
    ("{{.Id", "unclosed"),
    ("{{range .X}}", "end"),
    ("{{end}}", "unexpected"),
    ("{{nofunc .Id}}", "not defined"),
    ("{{.Id .Name}}", "non-function"),
    ("{{$nope}}", "undefined variable"),
])
def test_errors(tpl, msg):
    with pytest.raises(TemplateError, match=msg):
        Template(tpl).render(DATA)


def test_index_out_of_range():
    with pytest.raises(TemplateError, match="out of range"):
        render("{{index .Config.Env 5}}", DATA)


def test_sprintf():
    assert go_sprintf("%v %q %5d|%x", [1, 2], "a", 7, 255) == '[1 2] "a"     7|ff'
    assert go_sprintf("%s") == "%!s(MISSING)"


def test_table_rendering():
    rows = [{"ID": "abc", "Names": "one"}, {"ID": "abcdef123456", "Names": "two"}]
    out = render_table("table {{.ID}}\t{{.Names}}", rows, {"ID": "CONTAINER ID"})
    assert out.splitlines() == ["CONTAINER ID   NAMES", "abc            one",
                                "abcdef123456   two"]
    assert render_table("{{.ID}}", rows) == "abc\nabcdef123456\n"
    assert tabwrite(["a\tb", "ccc\td"]) == "a         b\nccc       d\n"

"""aiorun.api.wire answers exactly as json / urllib.parse do (its contract): the CLI's lean
encoders must never change a request or the reading of an answer."""

import json
import math
from urllib.parse import quote, quote_plus, urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiorun.api import wire

# JSON values as the daemon's answers and the CLI's bodies have them (and some they don't)
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
values = st.recursive(scalars, lambda kids: st.lists(kids, max_size=4)
                      | st.dictionaries(st.text(max_size=8), kids, max_size=4), max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(values)
def test_dumps_and_loads_match_json(v):
    assert wire.dumps(v) == json.dumps(v)
    text = json.dumps(v)
    assert wire.loads(text) == json.loads(text)
    assert wire.loads(text.encode()) == json.loads(text.encode())


@pytest.mark.parametrize("doc", [
    '{"Id": "abc", "Warnings": []}', ' \n{"a": 1}\r\n\t', '[1, 2.5, -3e4, "x\\u00e9"]',
    '"\\ud83d\\ude00"', '{"a": {"b": [null, true, false]}}', "0", "-0.0", '{"a": 1, "a": 2}',
    '"caf\u00e9"', '{"k": "\u4e2d\u6587"}', "1e400"])
def test_loads_table(doc):
    assert wire.loads(doc) == json.loads(doc)
    assert wire.loads(doc.encode()) == json.loads(doc.encode())
    assert wire.loads(bytearray(doc.encode())) == json.loads(bytearray(doc.encode()))


def test_loads_constants():
    assert math.isnan(wire.loads("NaN"))
    assert wire.loads("[Infinity, -Infinity]") == [math.inf, -math.inf]


@pytest.mark.parametrize("doc", [
    "", "   ", "{", '{"a": 1} x', "[1,]", "nul", "\ufeff{}", '{"a": "\x01"}', "01",
    b"\xff\xfe", b'{"a": 1}\xff'])
def test_loads_errors_are_jsons(doc):
    """What json refuses, wire refuses with json's own error (same type, same message)."""
    with pytest.raises(ValueError) as theirs:
        json.loads(doc)
    with pytest.raises(type(theirs.value)) as ours:
        wire.loads(doc)
    assert str(ours.value) == str(theirs.value)


def test_loads_other_unicode_encodings_fall_back_to_json():
    doc = '{"a": "\u00e9"}'
    for enc in ("utf-16", "utf-32", "utf-8-sig"):
        assert wire.loads(doc.encode(enc)) == {"a": "\u00e9"}


@pytest.mark.parametrize("obj", [
    {"a": float("nan")}, [float("inf"), -float("inf")], {1: "int key", None: 2, 1.5: 3,
                                                           True: 4}, ("tu", "ple"), "x\u2028y"])
def test_dumps_table(obj):
    assert wire.dumps(obj) == json.dumps(obj)


@pytest.mark.parametrize("obj", [{"a": {1, 2}}, object(), {(1, 2): 3}, b"bytes"])
def test_dumps_errors_are_jsons(obj):
    with pytest.raises(TypeError) as theirs:
        json.dumps(obj)
    with pytest.raises(TypeError) as ours:
        wire.dumps(obj)
    assert str(ours.value) == str(theirs.value)


def test_dumps_circular_reference_is_jsons_error():
    a: list = []
    a.append(a)
    with pytest.raises(ValueError, match="Circular reference"):
        wire.dumps(a)


@pytest.mark.parametrize("s,safe", [
    ("/containers/abc/start", "/:@"), ("/images/a b/json", "/:@"),
    ("/images/reg:5000/x@sha256:00/json", "/:@"), ("/v/é/ü", "/:@"), ("", "/"),
    ("a?b#c%d&e=f+g", "/"), ("~_.-", ""), ("\u4e2d", ""), ("a b", " "), ("x/y", "")])
def test_quote_table(s, safe):
    assert wire.quote(s, safe) == quote(s, safe)
    assert wire.quote(s.encode(), safe) == quote(s.encode(), safe)


@given(st.text(), st.sampled_from(["", "/", "/:@", " "]))
def test_quote_matches_urllib(s, safe):
    try:
        expected = quote(s, safe)
    except UnicodeEncodeError:                 # lone surrogates: both refuse
        with pytest.raises(UnicodeEncodeError):
            wire.quote(s, safe)
        return
    assert wire.quote(s, safe) == expected
    assert wire.quote_plus(s, safe) == quote_plus(s, safe)


@pytest.mark.parametrize("q", [
    {}, {"name": "web 1", "platform": "linux/amd64"}, {"stream": "1", "stdin": "0"},
    {"filters": '{"label": ["a=b"]}'}, {"t": 10, "signal": "SIGTERM"}, {b"k": b"a b"},
    {"condition": "removed"}, {"x": 1.5, "y": None}, {"\u00e9": "\u4e2d&="}])
def test_urlencode_table(q):
    assert wire.urlencode(q) == urlencode(q)


@given(st.dictionaries(st.text(max_size=6), st.text(max_size=10) | st.integers(),
                       max_size=4))
def test_urlencode_matches_urllib(q):
    try:
        expected = urlencode(q)
    except UnicodeEncodeError:
        return
    assert wire.urlencode(q) == expected

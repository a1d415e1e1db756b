"""Word expansion as BuildKit's shell lexer does it: the ${VAR...} operators, the escape
token, heredoc content (variables only, quotes kept)."""

import pytest

from aiorun.errors import InvalidArgument
from aiorun.images.build.expand import expand_heredoc, expand_word, expand_words

ENV = {"V": "/usr/local/bin/file.tar.gz", "E": "", "P": "a.b.c", "N": "x y"}

CASES = [
    ("${V#*/}", "usr/local/bin/file.tar.gz"),
    ("${V##*/}", "file.tar.gz"),
    ("${V%.*}", "/usr/local/bin/file.tar"),
    ("${V%%.*}", "/usr/local/bin/file"),
    ("${V%/*}", "/usr/local/bin"),
    ("${V#/usr}", "/local/bin/file.tar.gz"),
    ("${V#nomatch}", "/usr/local/bin/file.tar.gz"),
    ("${P/./-}", "a-b.c"),
    ("${P//./-}", "a-b-c"),
    ("${P//[ab]/X}", "X.X.c"),
    ("${P/b}", "a..c"),
    ("${V//\\//_}", "_usr_local_bin_file.tar.gz"),
    ("${UNSET#x}", ""),
    ("${X:-d}", "d"), ("${E:-d}", "d"), ("${E-d}", ""), ("${X-d}", "d"),
    ("${P:+y}", "y"), ("${E:+y}", ""), ("${E+y}", "y"),
    ("${P:?}", "a.b.c"), ("${E?msg}", ""),
    ("${X:-${P}}", "a.b.c"),
    ('"$N"', "x y"), ("'$N'", "$N"), ("a\\ b", "a b"),
]


@pytest.mark.parametrize("text,want", CASES)
def test_expand_word(text, want):
    assert expand_word(text, ENV) == want


@pytest.mark.parametrize("text,msg", [("${X:?need X}", "X: need X"),
                                      ("${E:?}", "E: is not allowed to be unset"),
                                      ("${X?}", "X: is not allowed to be unset"),
                                      ("${V:3}", "unsupported modifier")])
def test_expand_errors(text, msg):
    with pytest.raises(InvalidArgument, match=msg):
        expand_word(text, ENV)


def test_escape_token_backtick():
    assert expand_word("C:\\Windows", {}, "`") == "C:\\Windows"
    assert expand_word("\\go", {}, "`") == "\\go"
    assert expand_word('"a `"b`""', {}, "`") == 'a "b"'
    assert expand_word("`$P", ENV, "`") == "$P"
    assert expand_words("a` b c", {}, "`") == ["a b", "c"]


def test_heredoc_content():
    assert expand_heredoc('x="$P" \'$E\' \\$P \\\\ \\n\n', ENV) == 'x="a.b.c" \'\' $P \\ \\n\n'

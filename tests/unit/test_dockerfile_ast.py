"""The Dockerfile parser against BuildKit's parser, in its AST-dump style: for each input, every
instruction's (keyword, flags, args as BuildKit splits them, start line, end line).

The expected values follow BuildKit's frontend/dockerfile/parser (parser.go, line_parsers.go,
split_command.go) and the Dockerfile reference; the error cases its instructions layer
(instructions/parse.go, bflag.go)."""

import pytest

from aiorun.images.build.dockerfile import DockerfileError, parse, parse_nodes

AST = [
    # --- the classic forms ---------------------------------------------------------------
    ("FROM busybox AS build", [("from", [], ["busybox", "AS", "build"], 1, 1)]),
    ("FROM --platform=$BUILDPLATFORM busybox",
     [("from", ["--platform=$BUILDPLATFORM"], ["busybox"], 1, 1)]),
    ("RUN echo a  b", [("run", [], ["echo a  b"], 1, 1)]),
    ('RUN ["echo", "a b"]', [("run", [], ["echo", "a b"], 1, 1)]),
    ('CMD [ "sh" , "-c" ]', [("cmd", [], ["sh", "-c"], 1, 1)]),
    ("CMD [not json", [("cmd", [], ["[not json"], 1, 1)]),
    ('ENTRYPOINT ["a"] trailing', [("entrypoint", [], ['["a"] trailing'], 1, 1)]),
    ('SHELL ["/bin/sh", "-ec"]', [("shell", [], ["/bin/sh", "-ec"], 1, 1)]),
    ("COPY a b /dst/", [("copy", [], ["a", "b", "/dst/"], 1, 1)]),
    # not quote-aware: each word is expanded on its own later
    ('COPY "a b" /dst/', [("copy", [], ['"a', 'b"', "/dst/"], 1, 1)]),
    ('COPY ["a b", "/dst/"]', [("copy", [], ["a b", "/dst/"], 1, 1)]),
    ("ADD --chown=1:1 --chmod=644 x /y",
     [("add", ["--chown=1:1", "--chmod=644"], ["x", "/y"], 1, 1)]),
    ("VOLUME /a\t/b", [("volume", [], ["/a", "/b"], 1, 1)]),
    ('VOLUME ["/a", "/b"]', [("volume", [], ["/a", "/b"], 1, 1)]),
    ("EXPOSE 80 443/udp", [("expose", [], ["80", "443/udp"], 1, 1)]),
    ("USER app:app", [("user", [], ["app:app"], 1, 1)]),
    ("WORKDIR /a b", [("workdir", [], ["/a b"], 1, 1)]),
    ("STOPSIGNAL SIGKILL", [("stopsignal", [], ["SIGKILL"], 1, 1)]),
    ("MAINTAINER Jane Doe <j@d>", [("maintainer", [], ["Jane Doe <j@d>"], 1, 1)]),
    ("HEALTHCHECK --interval=5s --retries=3 CMD curl -f x",
     [("healthcheck", ["--interval=5s", "--retries=3"], ["CMD", "curl -f x"], 1, 1)]),
    ('HEALTHCHECK CMD ["a", "b"]', [("healthcheck", [], ["CMD", "a", "b"], 1, 1)]),
    ("HEALTHCHECK NONE", [("healthcheck", [], ["NONE"], 1, 1)]),
    ("ONBUILD RUN echo hi", [("onbuild", [], ["RUN", "echo hi"], 1, 1)]),
    ("ONBUILD COPY a /b", [("onbuild", [], ["COPY", "a", "/b"], 1, 1)]),
    ("run echo lower", [("run", [], ["echo lower"], 1, 1)]),
    # --- ENV / LABEL: key, value, separator (quotes kept for the expansion) ---------------
    ("ENV A=1 B=\"x y\"", [("env", [], ["A", "1", "=", "B", '"x y"', "="], 1, 1)]),
    ("ENV A b c  d", [("env", [], ["A", "b c  d", ""], 1, 1)]),
    ("LABEL key value with spaces", [("label", [], ["key", "value with spaces", ""], 1, 1)]),
    ("LABEL \"com.x\"=\"a b\" k=v",
     [("label", [], ['"com.x"', '"a b"', "=", "k", "v", "="], 1, 1)]),
    ("ENV A=a\\ b", [("env", [], ["A", "a\\ b", "="], 1, 1)]),
    # --- ARG: several names, quoted defaults ------------------------------------------------
    ("ARG a b=c", [("arg", [], ["a", "b=c"], 1, 1)]),
    ('ARG X="a b"', [("arg", [], ['X="a b"'], 1, 1)]),
    ("ARG X='a b' Y", [("arg", [], ["X='a b'", "Y"], 1, 1)]),
    ("ARG A=1\x1fB=2 C=3\xa0D=4", [("arg", [], ["A=1\x1fB=2", "C=3", "D=4"], 1, 1)]),
    # --- flags: every instruction, bare spelling kept, quotes processed, -- ends them ------
    ("COPY --link a b", [("copy", ["--link"], ["a", "b"], 1, 1)]),
    ("ENV --foo=1 A=b", [("env", ["--foo=1"], ["A", "b", "="], 1, 1)]),
    ('RUN --mount="type=cache,target=/x" echo', [("run", ["--mount=type=cache,target=/x"],
                                                  ["echo"], 1, 1)]),
    ("RUN --mount=type=tmpfs,target=/t --mount=type=tmpfs,target=/u true",
     [("run", ["--mount=type=tmpfs,target=/t", "--mount=type=tmpfs,target=/u"],
       ["true"], 1, 1)]),
    ("RUN --network=none -- --not-a-flag", [("run", ["--network=none"], ["--not-a-flag"],
                                             1, 1)]),
    ("RUN -- echo", [("run", [], ["echo"], 1, 1)]),
    ("RUN -x echo", [("run", [], ["-x echo"], 1, 1)]),
    ("COPY --from=a\\ b x y", [("copy", ["--from=a b"], ["x", "y"], 1, 1)]),
    # --- lines: continuation, comments, blank lines, only \n ends a line -------------------
    ("RUN a \\\n  b", [("run", [], ["a   b"], 1, 2)]),
    ("RUN a \\\n# comment\n\n  b\nRUN c", [("run", [], ["a   b"], 1, 4),
                                           ("run", [], ["c"], 5, 5)]),
    ("RUN a \\   \nb", [("run", [], ["a b"], 1, 2)]),
    # an escaped escape at the end is no continuation
    ("RUN echo a \\\\\nRUN echo b", [("run", [], ["echo a \\\\"], 1, 1),
                                     ("run", [], ["echo b"], 2, 2)]),
    ("RUN a\fb\vc\u2028d", [("run", [], ["a\fb\vc\u2028d"], 1, 1)]),
    ("FROM x\r\nRUN a\r\n", [("from", [], ["x"], 1, 1), ("run", [], ["a"], 2, 2)]),
    ("\n   # c\n  RUN a\n", [("run", [], ["a"], 3, 3)]),
    ("\ufeffFROM x", [("from", [], ["x"], 1, 1)]),
    # --- the escape directive ---------------------------------------------------------------
    ("# escape=`\nRUN a `\n  b\nENV GOPATH \\go",
     [("run", [], ["a   b"], 2, 3), ("env", [], ["GOPATH", "\\go", ""], 4, 4)]),
    ("# escape=`\nRUN dir c:\\\nRUN x", [("run", [], ["dir c:\\"], 2, 2),
                                         ("run", [], ["x"], 3, 3)]),
    ("#escape = `\n\n# escape=\\\nRUN a `\nb", [("run", [], ["a b"], 4, 5)]),
    ("# comment\n# escape=`\nRUN a \\\nRUN b", [("run", [], ["a RUN b"], 3, 4)]),
    # --- heredocs ---------------------------------------------------------------------------
    ("RUN <<EOF\necho hi\nEOF\nRUN b", [("run", [], ["<<EOF"], 1, 3),
                                        ("run", [], ["b"], 4, 4)]),
    ("COPY <<A <<B /dst/\na\nA\nb\nB", [("copy", [], ["<<A", "<<B", "/dst/"], 1, 5)]),
    ("RUN <<-EOF\n\techo\n\tEOF", [("run", [], ["<<-EOF"], 1, 3)]),
    ("RUN cat <<'EOF' > /x\n$A\nEOF", [("run", [], ["cat <<'EOF' > /x"], 1, 3)]),
    ('RUN ["sh", "-c", "cat <<EOF"]\nRUN x', [("run", [], ["sh", "-c", "cat <<EOF"], 1, 1),
                                             ("run", [], ["x"], 2, 2)]),
    ("ONBUILD RUN <<EOF\nx\nEOF", [("onbuild", [], ["RUN", "<<EOF"], 1, 3)]),
]


@pytest.mark.parametrize("text,expected", AST, ids=[c[0][:40] for c in AST])
def test_ast_dump(text, expected):
    assert [i.dump() for i in parse_nodes(text)] == expected


def test_heredoc_content_and_modes():
    run, copy, tabs, quoted, fd = parse_nodes(
        "RUN <<EOF\necho $A\nEOF\n"
        "COPY <<one <<two /d/\n1\none\n2\r\ntwo\n"
        "RUN <<-END\n\tx\n\t\ty\n\t END\n\tEND\n"
        'RUN cat <<"E\'F" >/f\n$X\nE\'F\n'
        "RUN 3<<X cat\nX\n")
    assert [(h.name, h.content, h.expand) for h in run.heredocs] == [("EOF", "echo $A\n",
                                                                       True)]
    assert [(h.name, h.content) for h in copy.heredocs] == [("one", "1\n"), ("two", "2\r\n")]
    doc = tabs.heredocs[0]
    assert doc.chomp and doc.content == "\tx\n\t\ty\n\t END\n" and doc.text() == "x\ny\n END\n"
    assert quoted.heredocs[0].name == "E'F" and not quoted.heredocs[0].expand
    assert fd.heredocs[0].fd == 3 and fd.heredocs[0].content == ""


ERRORS = [
    ("FROM x\nCMD [\"a\", [\"b\"]]", 2, "arrays must be comprised of strings only"),
    ("FROM x\nRUN [1]", 2, "arrays must be comprised of strings only"),
    ("FROM x\nCOPY [\"a\", null] ", 2, "arrays must be comprised of strings only"),
    ("FROM x\nENV PATH", 2, "ENV must have two arguments"),
    ("FROM x\nLABEL k", 2, "LABEL must have two arguments"),
    ("FROM x\nENV A=1 B", 2, "can't find = in 'B'"),
    ("FROM x\nENV =1", 2, "ENV names can not be blank"),
    ("FROM x\nARG =1", 2, "ARG names can not be blank"),
    ("FROM x\nARG", 2, "ARG requires at least one argument"),
    ("FROM x\nENV --foo=1 A=b", 2, "unknown flag: --foo"),
    ("FROM x\nCOPY --from a b", 2, "missing a value on flag: --from"),
    ("FROM x\nCOPY --link=maybe a b", 2, "expecting boolean value for flag --link"),
    ("FROM x\nCOPY --from=a --from=b x y", 2, "duplicate flag specified: --from"),
    ("FROM x\nCOPY a", 2, "COPY requires at least two arguments"),
    ("FROM x\nCOPY a <<EOF\nEOF", 2, "COPY cannot accept a heredoc as a destination"),
    ("FROM x\nRUN <<EOF\necho", 2, "unterminated heredoc"),
    ("FROM x\nUSER", 2, "USER requires exactly one argument"),
    ("FROM x\nWORKDIR", 2, "WORKDIR requires exactly one argument"),
    ("FROM x\nSHELL sh -c", 2, "SHELL requires the arguments to be in JSON form"),
    ("FROM x\nFROM a b", 2, "FROM requires either one or three arguments"),
    ("FROM x AS 1st", 1, "invalid name for build stage"),
    ("FROM x\nONBUILD ONBUILD RUN x", 2, "Chaining ONBUILD"),
    ("FROM x\nONBUILD FROM y", 2, "FROM isn't allowed as an ONBUILD trigger"),
    ("FROM x\nONBUILD NOPE", 2, "ONBUILD trigger: unknown instruction: NOPE"),
    ("FROM x\nHEALTHCHECK NONE x", 2, "HEALTHCHECK NONE takes no arguments"),
    ("FROM x\nHEALTHCHECK SOMETIMES x", 2, "Unknown type 'SOMETIMES' in HEALTHCHECK"),
    ("FROM x\nHEALTHCHECK CMD", 2, "Missing command after HEALTHCHECK CMD"),
    ("FROM x\nHEALTHCHECK --interval=1us CMD x", 2, "cannot be less than 1ms"),
    ("FROM x\nHEALTHCHECK --retries=-1 CMD x", 2, "--retries cannot be negative"),
    ("FROM x\nVOLUME [\"\"]", 2, "VOLUME specified can not be an empty string"),
    ("FROM x\nRUN a\fb\nBOGUS x", 3, "unknown instruction: BOGUS"),
    ("# escape=x\nFROM y", 1, "invalid escape token 'x' does not match ` or \\"),
    ("# escape=`\n# escape=`\nFROM y", 2, "only one escape parser directive can be used"),
    ("FROM x\nRUN --security=insecure true", 2, "RUN --security is not supported"),
    # words that cannot be expanded fail before any step runs (BuildKit expands all first)
    ("FROM x\nRUN true\nENV A=\"open", 3, "looking for matching double-quote"),
    ("FROM x\nCOPY ${X a /b/", 2, "missing '}' in substitution"),
    ("FROM x\nRUN --mount=type=cache,target=${X:3} true", 2, "unsupported modifier"),
    ("FROM x\nWORKDIR ${}", 2, "bad substitution"),
]


@pytest.mark.parametrize("text,line,msg", ERRORS, ids=[c[2][:40] for c in ERRORS])
def test_parse_errors(text, line, msg):
    with pytest.raises(DockerfileError) as e:
        parse(text, "Dockerfile")
    assert e.value.line == line
    assert f"dockerfile parse error on line {line} of Dockerfile: " in e.value.message
    assert msg in e.value.message


def test_every_error_comes_before_any_step():
    # a late ENV without a value fails the parse, not the build halfway
    with pytest.raises(DockerfileError, match="line 4"):
        parse("FROM x\nRUN echo one\nRUN echo two\nENV PATH\n")


def test_onbuild_heredoc_trigger_round_trips():
    from aiorun.images.build.dockerfile import apply_metadata, command_form
    cfg: dict = {}
    apply_metadata(cfg, parse("FROM x\nONBUILD RUN <<EOF\necho $A\nEOF\n")[1])
    assert cfg["OnBuild"] == ["RUN <<EOF\necho $A\nEOF"]
    trig = parse("FROM scratch\n" + cfg["OnBuild"][0])[1]
    assert command_form(trig) == ["/bin/sh", "-c", "echo $A\n"]


def test_commit_changes_split_on_newlines_only():
    from aiorun.images.build.dockerfile import parse_changes
    ch, = parse_changes(["CMD echo a\fb\u2028c"])
    assert ch.args == ["echo a\fb\u2028c"]


def test_variable_dependent_expansion_is_left_to_the_build():
    parse("FROM x\nARG N\nENV A=\"${N:?set N}\" B=${U/x/y}\nEXPOSE $PORT\n"
          "RUN --mount=type=cache,target=/c,uid=$UID true\n")

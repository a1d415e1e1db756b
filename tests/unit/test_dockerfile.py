import pytest

from aiorun.errors import InvalidArgument
from aiorun.images.build.dockerfile import (DockerfileError, apply_metadata, command_form,
                                            expand_word, expand_words, key_values, parse,
                                            parse_changes)

DOCKERFILE = r"""# syntax=docker/dockerfile:1
# escape=\
# a comment

FROM busybox
WORKDIR /app
ADD --chown=1:1 index.html \
    # comment inside a continuation
    /app/
RUN echo hello \
 && echo world > /app/w
EXPOSE 80 53/udp
ENV A=1 B="two words"
ENV LEGACY some value
CMD ["httpd", "-f", "-p", "80"]
"""


def test_parse_basic():
    ins = parse(DOCKERFILE)
    assert [i.cmd for i in ins] == ["FROM", "WORKDIR", "ADD", "RUN", "EXPOSE", "ENV", "ENV", "CMD"]
    assert [i.line for i in ins] == [5, 6, 7, 10, 12, 13, 14, 15]
    add = ins[2]
    assert add.flags == {"chown": "1:1"} and add.rest.split() == ["index.html", "/app/"]
    run = ins[3]
    assert run.rest == "echo hello  && echo world > /app/w" and run.json is None
    assert command_form(run) == ["/bin/sh", "-c", run.rest]
    assert ins[7].json == ["httpd", "-f", "-p", "80"]
    assert str(ins[0]) == "FROM busybox"


def test_escape_directive_backtick():
    ins = parse("# escape=`\nFROM scratch\nRUN echo a `\n  b\nCOPY C:\\x /y\n")
    assert ins[1].rest == "echo a   b"
    assert ins[2].rest == "C:\\x /y"


@pytest.mark.parametrize("text,line,msg", [
    ("FROM busybox\nFOO bar\n", 2, "unknown instruction: FOO"),
    ("FROM busybox\n\nCOPY onlyone\n", 3, "at least two arguments"),
    ("RUN true\nFROM busybox\n", 1, "must begin with FROM"),
    ("FROM busybox\nRUN\n", 2, "requires at least one argument"),
    ("FROM busybox\nCOPY --bogus=1 a b\n", 2, "unknown flag: --bogus"),
    ("FROM a b\n", 1, "one or three arguments"),
    ("FROM busybox\nSHELL sh -c\n", 2, "JSON form"),
    ("FROM busybox\nADD --from=x a b\n", 2, "unknown flag: --from"),
])
def test_parse_errors_name_the_line(text, line, msg):
    with pytest.raises(DockerfileError) as ei:
        parse(text)
    assert ei.value.line == line and msg in ei.value.message
    assert f"line {line}" in ei.value.message


def test_empty_and_no_from():
    with pytest.raises(DockerfileError, match="cannot be empty"):
        parse("# only a comment\n\n")
    with pytest.raises(DockerfileError, match="no FROM"):
        parse("ARG X=1\n")


def test_expansion():
    env = {"A": "x", "EMPTY": "", "P": "/srv"}
    assert expand_word("$A", env) == "x"
    assert expand_word("${A}b", env) == "xb"
    assert expand_word("${NOPE:-def}", env) == "def"
    assert expand_word("${EMPTY:-def}", env) == "def"
    assert expand_word("${EMPTY-def}", env) == ""
    assert expand_word("${A:+alt}", env) == "alt"
    assert expand_word("${NOPE:+alt}", env) == ""
    assert expand_word("'$A'", env) == "$A"
    assert expand_word('"$A y"', env) == "x y"
    assert expand_word(r"\$A", env) == "$A"
    assert expand_word("${NOPE:-$P/d}", env) == "/srv/d"
    assert expand_words("a 'b c' \"d $A\"", env) == ["a", "b c", "d x"]
    with pytest.raises(InvalidArgument, match="double-quote"):
        expand_word('"open', env)
    with pytest.raises(InvalidArgument, match="bad substitution"):
        expand_word("${}", env)


def test_apply_metadata():
    cfg: dict = {"Env": ["PATH=/bin", "A=old"]}
    for ins in parse("FROM scratch\nENV A=new B=\"$A two\"\nENV C the rest\nWORKDIR /app\n"
                     "WORKDIR sub\nEXPOSE 80 8000-8001/udp\nLABEL k=v \"a b\"=c\nUSER nobody\n"
                     "VOLUME /data\nVOLUME [\"/y\", \"/z\"]\nSTOPSIGNAL SIGINT\n"
                     "CMD echo $A\nENTRYPOINT [\"/bin/sh\"]\n")[1:]:
        apply_metadata(cfg, ins)
    assert cfg["Env"] == ["PATH=/bin", "A=new", "B=old two", "C=the rest"]  # Docker: substitution sees the env before this line
    assert cfg["WorkingDir"] == "/app/sub"
    assert cfg["ExposedPorts"] == {"80/tcp": {}, "8000/udp": {}, "8001/udp": {}}
    assert cfg["Labels"] == {"k": "v", "a b": "c"}
    assert cfg["User"] == "nobody"
    assert cfg["Volumes"] == {"/data": {}, "/y": {}, "/z": {}}
    assert cfg["StopSignal"] == "SIGINT"
    assert cfg["Cmd"] == ["/bin/sh", "-c", "echo $A"]
    assert cfg["Entrypoint"] == ["/bin/sh"]


def test_bad_metadata():
    with pytest.raises(DockerfileError, match="invalid containerPort"):
        apply_metadata({}, parse("FROM scratch\nEXPOSE http\n")[1])
    with pytest.raises(DockerfileError, match="line 2: Syntax error - can't find = in 'B'"):
        parse("FROM scratch\nENV A=1 B\n")


def test_commit_changes():
    ch = parse_changes(["CMD [\"sh\"]", "ENV X=1\nEXPOSE 8080"])
    assert [c.cmd for c in ch] == ["CMD", "ENV", "EXPOSE"]
    with pytest.raises(InvalidArgument, match="RUN is not a valid change command"):
        parse_changes(["RUN true"])
    with pytest.raises(InvalidArgument, match="invalid change"):
        parse_changes(["BOGUS x"])


def test_healthcheck():
    cfg: dict = {}
    apply_metadata(cfg, parse("FROM scratch\nHEALTHCHECK --interval=1m30s --retries=2 "
                              "CMD wget -q localhost || exit 1\n")[1])
    assert cfg["Healthcheck"] == {"Test": ["CMD-SHELL", "wget -q localhost || exit 1"],
                                  "Interval": 90_000_000_000, "Retries": 2}
    apply_metadata(cfg, parse('FROM scratch\nHEALTHCHECK --timeout=500ms CMD ["true"]\n')[1])
    assert cfg["Healthcheck"] == {"Test": ["CMD", "true"], "Timeout": 500_000_000}
    apply_metadata(cfg, parse("FROM scratch\nHEALTHCHECK NONE\n")[1])
    assert cfg["Healthcheck"] == {"Test": ["NONE"]}
    with pytest.raises(DockerfileError, match="invalid duration"):
        apply_metadata(cfg, parse("FROM scratch\nHEALTHCHECK --interval=5x CMD true\n")[1])
    with pytest.raises(DockerfileError, match="line 2"):
        parse("FROM scratch\nHEALTHCHECK sometimes\n")


def test_onbuild():
    cfg: dict = {}
    for ins in parse("FROM scratch\nONBUILD RUN echo hi\nONBUILD COPY . /app\n")[1:]:
        apply_metadata(cfg, ins)
    assert cfg["OnBuild"] == ["RUN echo hi", "COPY . /app"]
    with pytest.raises(DockerfileError, match="line 2: FROM isn't allowed"):
        parse("FROM scratch\nONBUILD FROM x\n")
    with pytest.raises(DockerfileError, match="line 2: ONBUILD trigger: unknown instruction"):
        parse("FROM scratch\nONBUILD NOPE x\n")

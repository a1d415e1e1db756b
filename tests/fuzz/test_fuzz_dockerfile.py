"""Fuzzing the Dockerfile parser (:func:`aiorun.images.build.dockerfile.parse`) and what the
builder does next with its instructions (word expansion, metadata on an image config,
``commit --change``).

Property: arbitrary text, and mutations of valid Dockerfiles (lines dropped, duplicated,
swapped, spliced with adversarial fragments), either parse or raise
:class:`~aiorun.images.build.dockerfile.DockerfileError`; the later steps raise only
:class:`~aiorun.errors.InvalidArgument` (DockerfileError is one).

Budget: see ``fuzzing.py`` (``AIORUN_FUZZ_EXAMPLES`` raises the number of examples).
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from aiorun.errors import InvalidArgument
from aiorun.images.build.dockerfile import (EXPANDED, METADATA, DockerfileError,
                                            apply_metadata, arg_pairs, command_form,
                                            expand_word, expand_words, heredoc_script, parse,
                                            parse_changes)
from aiorun.images.build.expand import expand_heredoc
from aiorun.images.build.runflags import mounts_of

from fuzzing import budget

VALID = [
    "FROM busybox\nRUN echo hi\nCMD [\"sh\"]\n",
    "# escape=`\nFROM busybox AS base\nENV A=1 B=\"two words\" \\\n  C=${A:-x}\n"
    "LABEL k=v \"q k\"='v 2'\nEXPOSE 80 53/udp 1000-1002\nWORKDIR /app\nWORKDIR sub\n"
    "USER 1000:1000\nVOLUME [\"/data\"]\nSTOPSIGNAL SIGTERM\nSHELL [\"/bin/sh\", \"-c\"]\n",
    "ARG V=1\nFROM busybox:$V\nCOPY --chown=1:1 --from=base a b /dst/\n"
    "ADD --chmod=644 [\"x y\", \"/z\"]\nHEALTHCHECK --interval=5s --retries=3 CMD true\n"
    "ONBUILD RUN make\nENTRYPOINT exec app\nMAINTAINER me\n",
    "FROM scratch\nRUN --mount=type=cache,target=/c \\\n# comment inside\n\n  ls\n"
    "HEALTHCHECK NONE\n",
    "FROM busybox\nRUN <<EOF\necho $A\nEOF\nCOPY <<a <<'b' /d/\n1\na\n2\nb\n"
    "RUN <<-X cat\n\tx\n\tX\nRUN --network=none --mount=type=secret,id=s,required \\\n"
    "  --mount=type=tmpfs,target=/t,size=1m -- true\nENV P=${A##*/} Q=${A/x/y}\n",
]

FRAGMENTS = [
    "\\", "`", "\\\n", "#", "# escape=\\", "# escape=x", "${", "${A", "${A:-", "${A:+b}",
    "${A?}", "$", "\"", "'", "[", "[\"a\"", "[\"a\", 1]", "--", "--x", "--chown", "--=",
    "FROM", "ONBUILD", "ONBUILD ONBUILD", "HEALTHCHECK", "HEALTHCHECK --interval=",
    "--interval=" + "9" * 400 + "h", "--retries=" + "9" * 5000, "EXPOSE 0-70000", "AS", "\t",
    "\x00", "\r", "\u2028", "\x0b", "é", " ",
    "<<EOF", "<<-EOF", "<<'EOF'", "<<\"E\"", "3<<X", "EOF", "\tEOF", "${A#", "${A%%*}",
    "${A/", "${A//x/y}", "${A:?", "--mount=type=", "--mount=type=cache,sharing=x",
    "--mount=\"type=tmpfs\",target=/x", "--network=host", "--security=insecure",
]

line_lists = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=20)),
                      max_size=6).map(" ".join)


_words = st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=12),
                  st.sampled_from(["CMD", "NONE", "true", "a=b", "=", "x=", "80/tcp", "1-3",
                                   "70000", "/dev/null", "[]", "[\"sh\", \"-c\"]"]))
_flag_values = st.one_of(
    _words, st.sampled_from(["1s", "1m30s", "500ms", "0", "-1", "1.5h", "1µs", "9" * 30 + "h",
                             "9" * 400 + "h", "9" * 400 + ".9s", "1" * 5000, "1e9"]))
_commands = st.sampled_from([
    "FROM", "RUN", "CMD", "ENTRYPOINT", "ENV", "LABEL", "EXPOSE", "ADD", "COPY", "USER",
    "WORKDIR", "VOLUME", "ARG", "STOPSIGNAL", "SHELL", "MAINTAINER", "ONBUILD", "HEALTHCHECK",
    "healthcheck", "ONBUILD HEALTHCHECK"])
_flag_names = st.sampled_from(["interval", "timeout", "start-period", "retries",
                               "start-interval", "chown", "chmod", "from", "platform", "link",
                               "bogus", "mount", "network", "parents", "exclude"])
_health_flags = st.sampled_from(["interval", "timeout", "start-period", "start-interval",
                                 "retries"])


@st.composite
def instruction_lines(draw: st.DrawFn) -> str:
    """``CMD --flag=value ... args``, arguments shaped enough to get past the first checks."""
    cmd = draw(_commands)
    health = "HEALTHCHECK" in cmd.upper() and draw(st.booleans())
    names = _health_flags if health else _flag_names
    flags = [f"--{k}={v}" for k, v in draw(st.lists(st.tuples(names, _flag_values),
                                                    max_size=3))]
    args = draw(st.lists(_words, max_size=4))
    if health:
        args = ["CMD"] + args + ["true"]
    return " ".join([cmd] + flags + args)


@st.composite
def mutated_dockerfiles(draw: st.DrawFn) -> str:
    lines = draw(st.sampled_from(VALID)).split("\n")
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["drop", "dup", "swap", "insert", "splice", "truncate"]))
        if not lines:
            lines = [""]
        i = draw(st.integers(0, len(lines) - 1))
        if op == "drop":
            del lines[i]
        elif op == "dup":
            lines.insert(i, lines[i])
        elif op == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "insert":
            lines.insert(i, draw(st.one_of(line_lists, instruction_lines())))
        elif op == "splice":
            at = draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:at] + draw(line_lists) + lines[i][at:]
        else:
            lines[i] = lines[i][:draw(st.integers(0, len(lines[i])))]
    return draw(st.sampled_from(["\n", "\r\n", "\r"])).join(lines)


def use(text: str) -> None:
    """Parse ``text``, then run what the builder runs on each instruction."""
    try:
        instructions = parse(text)
    except DockerfileError:
        return
    config: dict = {}
    env = {"A": "1", "EMPTY": ""}
    for ins in instructions:
        try:
            if ins.cmd in EXPANDED:
                expand_words(ins.rest, env)
                expand_word(ins.rest, env)
            if ins.cmd in METADATA and ins.cmd != "ARG":
                apply_metadata(config, ins, env)
            if ins.cmd in ("RUN", "CMD", "ENTRYPOINT"):
                command_form(ins)
                heredoc_script(ins)
                mounts_of(ins, env, "/")
            for doc in ins.heredocs:
                expand_heredoc(doc.text(), env, ins.escape)
            arg_pairs(ins)
        except InvalidArgument:
            pass


@budget(300)
@given(st.text(max_size=300))
def test_arbitrary_text(text):
    use(text)


@budget(300)
@given(st.lists(line_lists, max_size=8).map("\n".join))
def test_fragment_soup(text):
    use("FROM scratch\n" + text)


@budget(300)
@given(st.lists(instruction_lines(), min_size=1, max_size=6))
def test_instruction_lines(lines):
    use("FROM scratch\n" + "\n".join(lines))
    for line in lines:  # one bad line fails the whole file: also each on its own
        use("FROM scratch\n" + line)


@budget(300)
@given(mutated_dockerfiles())
def test_mutated_valid_dockerfiles(text):
    use(text)


@budget(150)
@given(st.lists(st.one_of(line_lists, st.text(max_size=40)), max_size=3))
def test_commit_changes(changes):
    try:
        for ins in parse_changes(changes):
            apply_metadata({}, ins, {})
    except InvalidArgument:
        pass

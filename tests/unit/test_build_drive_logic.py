"""Pure pieces of build driving: the stage graph, build parameters, stage output, flag
reading, --cache-from matching, context tars (the docker CLI's unpadded one, extra files,
per-Dockerfile ignore files) and the first value of a repeated query parameter."""

from __future__ import annotations

import io
import tarfile

import pytest

from aiorun.api.http import Request
from aiorun.images.build import options
from aiorun.images.build.cache import cache_from_layer
from aiorun.images.build.context import (DockerIgnore, extract_context, ignore_text,
                                         write_context_tar)
from aiorun.images.build.dockerfile import DockerfileError, parse
from aiorun.images.build.flags import flag, flag_bool, flag_values
from aiorun.images.build.graph import needed, split_stages, stage_index, target_index
from aiorun.images.build.output import StageOutput, stderr_text
from aiorun.images.build.stage import Stage

GRAPH = """\
ARG BASE=busybox
FROM ${BASE} AS base
RUN true
FROM base AS left
RUN echo left
FROM busybox AS right
COPY --from=base /x /x
FROM busybox AS unused
RUN false
FROM busybox AS mounts
RUN --mount=type=bind,from=right,target=/r --mount=type=tmpfs,target=/t mounted
FROM left
COPY --from=right /y /y
COPY --from=1 /z /z
COPY --from=alpine:3 /etc/os-release /
"""


def _stages(text: str, meta: dict[str, str] | None = None):
    ins = parse(text)
    first = next(i for i, x in enumerate(ins) if x.cmd == "FROM")
    return split_stages(ins[first:], meta if meta is not None else {"BASE": "busybox"})


def test_split_stages_finds_each_stages_dependencies():
    st = _stages(GRAPH)
    assert [(s.index, s.name, s.base, sorted(s.deps)) for s in st] == [
        (0, "base", "busybox", []),
        (1, "left", "base", [0]),
        (2, "right", "busybox", [0]),
        (3, "unused", "busybox", []),
        (4, "mounts", "busybox", [2]),    # RUN --mount=...,from=right (the other: tmpfs)
        (5, "", "left", [1, 2]),          # alpine:3 is an image, "1" is stage left
    ]
    assert [s.label for s in st][-2:] == ["mounts", "stage-5"]
    assert [len(s.instructions) for s in st] == [2, 2, 2, 2, 2, 4]


@pytest.mark.parametrize("target, want", [
    (None, [0, 1, 2, 5]),        # the last stage: "unused" and "mounts" are skipped
    ("left", [0, 1]),
    ("RIGHT", [0, 2]),           # names are case-insensitive
    ("mounts", [0, 2, 4]),
    ("unused", [3]),
])
def test_needed_stages_for_a_target(target, want):
    st = _stages(GRAPH)
    assert needed(st, target_index(st, target)) == want


def test_stage_references_only_reach_earlier_stages():
    st = _stages("FROM busybox AS a\nCOPY --from=b /x /x\nFROM busybox AS b\n")
    assert st[0].deps == set()             # a later stage's name is an image name
    assert stage_index(st, "b", 2) == 1 and stage_index(st, "b", 1) is None
    assert stage_index(st, "0", 1) == 0 and stage_index(st, "A", 1) == 0


def test_graph_errors_come_before_any_step():
    with pytest.raises(DockerfileError, match="line 3: duplicate stage name 'A'"):
        _stages("FROM busybox AS a\nRUN true\nFROM busybox AS A\n")
    with pytest.raises(DockerfileError, match="target stage 'nope' could not be found"):
        target_index(_stages(GRAPH), "nope")


def test_meta_args_expand_from_and_copy_from():
    st = _stages("ARG S=one\nFROM busybox AS one\nFROM busybox\nCOPY --from=${S} /a /a\n",
                 {"S": "one"})
    assert st[1].deps == {0}


@pytest.mark.parametrize("value, want", [
    (None, "none"), ("", "none"), ("default", "none"), ("none", "none"), ("host", "host"),
])
def test_network_mode(value, want):
    assert options.network_mode(value) == want


@pytest.mark.parametrize("value", ["bridge", "mynet", "container:abc"])
def test_network_mode_refused(value):
    with pytest.raises(ValueError, match=f"networkmode '{value}' is not supported"):
        options.network_mode(value)


def test_extra_hosts():
    assert options.extra_hosts(["a:1.2.3.4", "b=::1,c:[fe80::1]"]) == [
        ("a", "1.2.3.4"), ("b", "::1"), ("c", "fe80::1")]
    assert options.extra_hosts(["v6:2001:db8::1"]) == [("v6", "2001:db8::1")]
    with pytest.raises(ValueError, match="invalid IP address in add-host: 'nope'"):
        options.extra_hosts(["x:nope"])
    with pytest.raises(ValueError, match="host-gateway is not supported"):
        options.extra_hosts(["x:host-gateway"])


def test_cache_from_parameter():
    assert options.cache_from(None) == [] and options.cache_from('["a:1", ""]') == ["a:1"]
    with pytest.raises(ValueError, match="JSON array"):
        options.cache_from('{"a": 1}')
    with pytest.raises(ValueError, match="invalid JSON"):
        options.cache_from("[")


def test_stage_output_prefixes_lines_only_when_stages_run_together():
    one = StageOutput("builder", 3, prefixed=False)
    assert one.step(2, "RUN x") == {"stream": "Step 2/3 : RUN x\n"}
    assert one.message({"stream": "a\nb"}) == {"stream": "a\nb"}
    many = StageOutput("builder", 3, prefixed=True)
    assert many.step(2, "RUN x") == {"stream": "[builder 2/3] RUN x\n"}
    assert many.message({"stream": "a\npart"}) == {"stream": "[builder] a\n[builder] part"}
    assert many.message({"stream": "ial\n"}) == {"stream": "ial\n"}    # same line goes on
    assert many.message({"aux": {"ID": "x"}}) == {"aux": {"ID": "x"}}
    assert stderr_text("oops\n") == "\x1b[91moops\n\x1b[0m"


def test_flag_helpers_read_the_parsers_flags():
    ins = parse("FROM busybox\nCOPY --link --from=a --chmod=644 x /y\n")[1]
    assert flag(ins, "from") == "a" and flag(ins, "nope") is None
    assert flag(ins, "link") == "true"            # a bare flag
    assert flag_bool(ins, "link") and not flag_bool(ins, "parents")
    ins = parse("FROM busybox\nCOPY --link=false --exclude=*.a --exclude=*.b x /y/\n")[1]
    assert flag_values(ins, "exclude") == ["*.a", "*.b"]      # repeated, in order
    assert not flag_bool(ins, "link") and flag(ins, "link") == "false"
    assert flag_values(ins, "chown") == []


def _cfg(layers: list[str], history: list[tuple[str, bool]]) -> dict:
    return {"rootfs": {"type": "layers", "diff_ids": [f"sha256:{h}" for h in layers]},
            "history": [dict({"created_by": c}, **({"empty_layer": True} if e else {}))
                        for c, e in history]}


def test_cache_from_layer_matches_the_history_chain():
    st = Stage()
    st.layers = ["base"]
    st.history = [{"created_by": "ADD rootfs"}, {"created_by": "ENV A=1", "empty_layer": True}]
    src = _cfg(["base", "run1", "run2"], [("ADD rootfs", False), ("ENV A=1", True),
                                          ("sh -c one", False), ("sh -c two", False)])
    assert cache_from_layer([src], st, "sh -c one") == "run1"
    assert cache_from_layer([src], st, "sh -c two") is None      # not the next step
    other_env = _cfg(["base", "run1"], [("ADD rootfs", False), ("ENV A=2", True),
                                        ("sh -c one", False)])
    assert cache_from_layer([other_env], st, "sh -c one") is None
    other_base = _cfg(["BASE", "run1"], [("ADD rootfs", False), ("ENV A=1", True),
                                         ("sh -c one", False)])
    assert cache_from_layer([other_base], st, "sh -c one") is None
    empty_step = _cfg(["base"], [("ADD rootfs", False), ("ENV A=1", True),
                                 ("sh -c one", True)])
    assert cache_from_layer([empty_step], st, "sh -c one") is None


def _unpadded(files: dict[str, bytes]) -> bytes:
    """A tar that ends right after its last member's data (no padding, no end-of-archive
    blocks), as the docker CLI sends a context with a Dockerfile added to it."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
    raw = buf.getvalue()
    with tarfile.open(fileobj=io.BytesIO(raw)) as t:
        last = t.getmembers()[-1]
    return raw[:last.offset_data + last.size]


def test_context_without_end_blocks_is_accepted(tmp_path):
    data = _unpadded({"f": b"in context\n", ".dockerfile.abc": b"FROM busybox\n"})
    assert len(data) % 512 != 0
    (tmp_path / "c.tar").write_bytes(data)
    out = tmp_path / "out"
    out.mkdir()
    extract_context(tmp_path / "c.tar", out)
    assert (out / ".dockerfile.abc").read_bytes() == b"FROM busybox\n"
    # a member cut short inside its data is still an error
    (tmp_path / "short.tar").write_bytes(data[:-3])
    out2 = tmp_path / "out2"
    out2.mkdir()
    with pytest.raises(Exception, match="invalid build context"):
        extract_context(tmp_path / "short.tar", out2)


def test_context_tar_extra_files_and_own_ignore(tmp_path):
    ctx = tmp_path / "ctx"
    (ctx / "sub").mkdir(parents=True)
    (ctx / "sub" / "app.Dockerfile").write_text("FROM busybox\n")
    (ctx / "a").write_text("a")
    (ctx / "b").write_text("b")
    (ctx / ".dockerignore").write_text("a\n")
    buf = io.BytesIO()
    write_context_tar(ctx, buf, keep=("sub/app.Dockerfile", ".dockerignore"),
                      ignore_rules="b\nsub\n")
    buf.seek(0)
    with tarfile.open(fileobj=buf) as t:
        names = sorted(t.getnames())
        sent = t.extractfile(".dockerignore").read().decode()
    # the own rules decide (b out, a in); the Dockerfile in an excluded dir is still sent
    assert names == [".dockerignore", "a", "sub/app.Dockerfile"]
    assert sent == "b\nsub\n"
    buf = io.BytesIO()
    write_context_tar(ctx, buf, extra={".dockerfile.x": b"FROM busybox\n"})
    buf.seek(0)
    with tarfile.open(fileobj=buf) as t:
        sent = t.extractfile(".dockerignore").read().decode()
        assert sorted(t.getnames()).count(".dockerignore") == 1
    assert sent == "a\n.dockerfile.x\n.dockerignore\n"


def test_ignore_text_prefers_the_dockerfiles_own(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / ".dockerignore").write_text("root\n")
    assert ignore_text(tmp_path, "sub/app.Dockerfile") == "root\n"
    (tmp_path / "sub" / "app.Dockerfile.dockerignore").write_text("own\n")
    assert ignore_text(tmp_path, "sub/app.Dockerfile") == "own\n"
    assert DockerIgnore.from_dir(tmp_path, "sub/app.Dockerfile").excluded("own")
    assert ignore_text(tmp_path / "sub") is None


def test_repeated_query_parameter_first_value_wins():
    req = Request.from_target("POST", "/build?dockerfile=a&dockerfile=b&q=1&q=0", {})
    assert req.arg("dockerfile") == "a" and req.args("dockerfile") == ["a", "b"]
    assert req.flag("q") is True


@pytest.mark.parametrize("value, want", [
    ("1", True), ("true", True), ("True", True), ("yes", True), ("2", True), ("on", True),
    ("", False), ("0", False), ("no", False), ("false", False), ("FALSE", False),
    ("none", False), (" 0 ", False),
])
def test_boolean_parameters_read_as_dockers_server_reads_them(value, want):
    from urllib.parse import quote
    req = Request.from_target("POST", f"/build?nocache={quote(value)}", {})
    assert req.flag("nocache") is want
    assert Request.from_target("POST", "/build", {}).flag("nocache", True) is True

"""RUN --mount parsing (BuildKit's CSV syntax and checks) and build secrets' transport."""

import pytest

from aiorun.errors import InvalidArgument
from aiorun.images.build import buildsecrets
from aiorun.images.build.dockerfile import parse
from aiorun.images.build.runflags import mounts_of, parse_mount
from aiorun.images.build.runmounts import RunSetup

OK = [
    ("type=tmpfs,target=/t,size=64m", dict(type="tmpfs", target="/t", size=64 << 20,
                                           readonly=False)),
    ("type=cache,target=/c", dict(type="cache", target="/c", readonly=False)),
    ("type=cache,dst=/c,id=x,sharing=locked,mode=0700,uid=1,gid=2,ro",
     dict(id="x", sharing="locked", mode=0o700, uid=1, gid=2, readonly=True)),
    ("target=/src", dict(type="bind", target="/src", readonly=True)),
    ("type=bind,source=a,target=/a,rw", dict(source="a", readonly=False)),
    ("type=bind,from=build,src=/out,destination=/in,readonly=false",
     dict(from_="build", source="/out", target="/in", readonly=False)),
    ("type=secret,id=tok,required", dict(type="secret", id="tok", required=True,
                                         readonly=True)),
    ('"type=secret","id=a,b"', dict(type="secret", id="a,b")),
    ("TYPE=TMPFS,Target=/x", dict(type="tmpfs", target="/x")),
    ("type=ssh,required", dict(type="ssh", required=True)),
    ("type=ssh,uid=1000,gid=1001,mode=0660", dict(type="ssh", uid=1000, gid=1001, mode=0o660)),
    ("type=ssh,id=gh,target=/a.sock", dict(type="ssh", id="gh", target="/a.sock")),
    ("type=cache,target=/c,from=build,source=/seed",
     dict(type="cache", from_="build", source="/seed", readonly=False)),
]


@pytest.mark.parametrize("value,fields", OK, ids=[v for v, _ in OK])
def test_parse_mount(value, fields):
    m = parse_mount(value, lambda w: w)
    for k, v in fields.items():
        assert getattr(m, k) == v, k


BAD = [
    ("type=nfs,target=/x", "unsupported mount type 'nfs'"),
    ("type=tmpfs,target=/x,colour=blue", "unexpected key 'colour' in 'colour=blue'"),
    ("type=bind,target=/x,size=1m", "unexpected key 'size' for mount type 'bind'"),
    ("type=tmpfs,target=/x,mode=0700", "mode not allowed for 'tmpfs' type mounts"),
    ("type=tmpfs,target=/x,required", "unexpected key 'required' for mount type 'tmpfs'"),
    ("type=bind,target=/x,sharing=shared", "invalid cache sharing set for bind mount"),
    ("type=cache,target=/x,sharing=sometimes", "unsupported sharing value 'sometimes'"),
    ("type=cache,target=/x,uid=me", "invalid value me for uid"),
    ("type=secret,id=a,source=b", "both source and id can't be set"),
    ("type=secret,id=a,from=x", "secret mount should not have a from"),
    ("type=tmpfs,target=/x,bogus", "invalid field 'bogus' must be a key=value pair"),
    ("type=ssh,from=build", "ssh mount should not have a from or a source"),
    ("type=bind,from=$STAGE,target=/x", "doesn't support variable expansion"),
]


@pytest.mark.parametrize("value,msg", BAD, ids=[m for _, m in BAD])
def test_bad_mount_is_a_parse_error_naming_the_line(value, msg):
    with pytest.raises(InvalidArgument) as e:
        parse(f"FROM x\nRUN true\nRUN --mount={value} true\n", "Dockerfile")
    assert "line 3 of Dockerfile" in e.value.message and msg in e.value.message


@pytest.mark.parametrize("flag, build, want", [
    ("", "none", "none"), ("", "host", "host"),
    ("--network=default ", "none", "none"), ("--network=default ", "host", "host"),
    ("--network=none ", "host", "none"), ("--network=none ", "none", "none"),
])
def test_run_network_flag_overrides_the_builds_network(tmp_path, flag, build, want):
    ins = parse(f"FROM x\nRUN {flag}true\n")[1]
    assert RunSetup(ins, tmp_path, tmp_path).network(build) == want


def test_mounts_are_expanded_and_defaulted_at_build_time():
    ins = parse("FROM x\nRUN --mount=type=cache,target=${D} "
                "--mount=type=secret,id=tok --mount=type=secret,target=/k/key "
                "--mount=type=tmpfs,target=rel true\n")[1]
    cache, s1, s2, tmp = mounts_of(ins, {"D": "/var/cache"}, "/work")
    assert (cache.target, cache.id) == ("/var/cache", "/var/cache")
    assert (s1.id, s1.target) == ("tok", "/run/secrets/tok")
    assert (s2.id, s2.target) == ("key", "/k/key")
    assert tmp.target == "/work/rel"
    with pytest.raises(InvalidArgument, match="needs a target"):
        mounts_of(parse("FROM x\nRUN --mount=type=tmpfs,target=$E true\n")[1], {}, "/")


def test_secrets_header_round_trip(tmp_path, monkeypatch):
    f = tmp_path / "s"
    f.write_bytes(b"\x00secret\xff")
    monkeypatch.setenv("TOKEN_VAR", "from-env")
    specs = dict(buildsecrets.parse_spec(s) for s in
                 (f"id=a,src={f}", "id=b,env=TOKEN_VAR", "type=env,id=TOKEN_VAR"))
    assert specs == {"a": b"\x00secret\xff", "b": b"from-env", "TOKEN_VAR": b"from-env"}
    assert buildsecrets.decode(buildsecrets.encode(specs)) == specs
    with pytest.raises(InvalidArgument, match="cannot read"):
        buildsecrets.parse_spec(f"id=x,src={tmp_path / 'missing'}")
    with pytest.raises(InvalidArgument, match="too large"):
        buildsecrets.encode({"big": b"x" * 40000})
    with pytest.raises(InvalidArgument, match="invalid X-Aiorun-Build-Secrets"):
        buildsecrets.decode("not base64!")


def test_cache_sharing_locked_and_private(tmp_path):
    ins = parse("FROM x\nRUN --mount=type=cache,target=/c,id=k,sharing=locked "
                "--mount=type=cache,target=/p,id=k,sharing=private true\n")[1]
    locked, private = mounts_of(ins, {}, "/")
    first = RunSetup(ins, tmp_path / "w1", tmp_path / "root", [locked],
                     cache_root=tmp_path / "cache")
    m, = first.prepare()
    # while the locked step holds it, a private user gets its own fresh directory
    second = RunSetup(ins, tmp_path / "w2", tmp_path / "root", [private],
                      cache_root=tmp_path / "cache")
    p, = second.prepare()
    assert p.source != m.source and p.source.startswith(str(tmp_path / "w2"))
    second.cleanup()
    assert not (tmp_path / "w2" / "caches").exists() or \
        not any((tmp_path / "w2" / "caches").iterdir())
    first.cleanup()
    third = RunSetup(ins, tmp_path / "w3", tmp_path / "root", [private],
                     cache_root=tmp_path / "cache")
    q, = third.prepare()
    assert q.source == m.source        # free again: the shared cache itself
    third.cleanup()



def test_ssh_mount_defaults_as_buildkit():
    ins = parse("FROM x\nRUN --mount=type=ssh --mount=type=ssh,id=b,target=t "
                "--mount=type=ssh,id=c true\n")[1]
    ms = mounts_of(ins, {}, "/w")
    assert [(m.id, m.target) for m in ms] == [("default", "/run/buildkit/ssh_agent.0"),
                                              ("b", "/w/t"), ("c", "/run/buildkit/ssh_agent.2")]


def test_buildssh_spec_and_header(tmp_path):
    import socket
    from aiorun.images.build import buildssh
    sock = tmp_path / "agent.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(sock))
    try:
        assert buildssh.parse_spec("default", {"SSH_AUTH_SOCK": str(sock)}) == (
            "default", str(sock))
        assert buildssh.parse_spec(f"gh={sock}", {}) == ("gh", str(sock))
        hdr = buildssh.encode({"gh": str(sock)})
        assert buildssh.decode(hdr) == {"gh": str(sock)}
        key = tmp_path / "id_ed25519"
        key.write_text("k")
        for spec, env, msg in (("default", {}, "make sure SSH_AUTH_SOCK is set"),
                               (f"k={key}", {}, "forwards ssh-agent sockets only"),
                               (f"k={sock},{sock}", {}, "exactly one agent socket per ID"),
                               ("=x", {}, "the ID is empty"),
                               (f"k={tmp_path}", {}, "is not an ssh-agent socket")):
            with pytest.raises(InvalidArgument, match=msg):
                buildssh.parse_spec(spec, env)
        # the daemon refuses a socket it cannot reach, and a relative path
        gone = buildssh.encode({"x": str(tmp_path / "gone.sock")})
        with pytest.raises(InvalidArgument, match="the daemon cannot reach the agent socket"):
            buildssh.decode(gone)
        with pytest.raises(InvalidArgument, match="is not absolute"):
            buildssh.decode(buildssh.encode({"x": "rel.sock"}))
        with pytest.raises(InvalidArgument, match="invalid X-Aiorun-Build-Ssh header"):
            buildssh.decode("%%%")
    finally:
        s.close()


def test_entitlements_allow_and_check():
    from aiorun.images.build import entitlements as ent
    assert ent.parse_allow(["network.host"]) == {"network.host"}
    assert ent.parse_allow(["network.host,network.host", ""]) == {"network.host"}
    for bad, msg in (("security.insecure", "security.insecure is not supported"),
                     ("net.host", "invalid entitlement 'net.host'")):
        with pytest.raises(ValueError, match=msg):
            ent.parse_allow([bad])
    ins = parse("FROM x\nRUN true\nRUN --network=host true\nRUN --network=none true\n",
                "Dockerfile")
    ent.check(ins, frozenset({"network.host"}))
    with pytest.raises(InvalidArgument, match="line 3 of Dockerfile.*network.host entitlement"):
        ent.check(ins, frozenset(), "Dockerfile")
    with pytest.raises(InvalidArgument, match="aiorun build --allow network.host"):
        ent.require(ins[2], frozenset())

"""Real builds of the Dockerfile language as BuildKit reads it: heredocs (RUN and COPY), the
escape directive in expansion, legacy LABEL, multi-name ARG, the ``${VAR...}`` operators,
the predefined platform ARGs, ``RUN --network``, parse errors before any step runs.

The base image is busybox, itself built by the builder (``FROM scratch`` + ``ADD``)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from aiorun.config import Paths
from aiorun.testing.daemon import CliEnv, start_daemon
from aiorun.testing.images import write_busybox_rootfs_tar

pytestmark = pytest.mark.integration


@dataclass
class Env(CliEnv):
    paths: Paths
    base: Path


    def build(self, name: str, dockerfile: str, *flags: str, files: dict | None = None,
              extra_env: dict | None = None) -> subprocess.CompletedProcess:
        ctx = self.base / f"ctx-{name}"
        ctx.mkdir(exist_ok=True)
        (ctx / "Dockerfile").write_text(dockerfile)
        for rel, data in (files or {}).items():
            (ctx / rel).write_text(data)
        return self.cli("build", "-t", name, *flags, str(ctx), extra_env=extra_env)

    def run(self, image: str, *cmd: str) -> str:
        return self.ok("run", "--rm", "--network", "none", image, *cmd)

    def inspect(self, image: str) -> dict:
        return json.loads(self.ok("image", "inspect", image))[0]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp("buildlang")
    run = Path(tempfile.mkdtemp(prefix="aiorun-run-", dir="/tmp"))
    paths = Paths(root=base / "root", run=run)
    d = start_daemon(paths, backend="asyncio", storage_driver="overlay")
    e = Env(paths, base)
    try:
        ctx = base / "bbctx"
        ctx.mkdir()
        write_busybox_rootfs_tar(ctx / "busybox.tar")
        (ctx / "Dockerfile").write_text('FROM scratch\nADD busybox.tar /\nCMD ["sh"]\n')
        e.ok("build", "-q", "-t", "busybox", str(ctx))
        yield e
    finally:
        d.stop_all()
        subprocess.run(["rm", "-rf", "--one-file-system", str(run)], check=False)


@pytest.fixture(autouse=True)
def no_mounts_left(env, tmp_path):
    """Each test leaves no mount under this module's roots (snapshots, RUN mounts)."""
    roots = (str(env.paths.root), str(env.paths.run), str(tmp_path))

    def mine() -> set[str]:
        return {ln.split()[4] for ln in Path("/proc/self/mountinfo").read_text().splitlines()
                if ln.split()[4].startswith(roots)}
    before = mine()
    yield
    assert not mine() - before, f"mounts left behind: {sorted(mine() - before)}"


HEREDOCS = """\
FROM busybox
ARG GREETING=hello
RUN <<EOF
echo "$GREETING from heredoc" > /out1
EOF
RUN <<EOF
#!/bin/sh
echo "script $0" > /out2
EOF
RUN cat <<A > /out3 && cat <<'B' >> /out3
first $GREETING
A
second $GREETING
B
RUN <<-EOF
\techo tabbed > /out4
\tEOF
COPY <<EOF /etc/x.conf
value=$GREETING "quoted"
EOF
COPY <<'EOF' /raw.conf
value=$GREETING
EOF
COPY --chmod=600 <<one <<two /multi/
1
one
2
two
"""


def test_heredocs_run_and_copy(env):
    r = env.build("heredocs", HEREDOCS)
    assert r.returncode == 0, r.stdout + r.stderr
    out = env.run("heredocs", "sh", "-c",
                  "cat /out1 /out2 /out3 /out4 /etc/x.conf /raw.conf /multi/one /multi/two; "
                  "stat -c '%a %n' /etc/x.conf /multi/one; ls /dev/pipes 2>&1 | head -1")
    assert out.splitlines() == [
        "hello from heredoc",
        "script /dev/pipes/EOF",
        "first hello", "second $GREETING",
        "tabbed",
        'value=hello "quoted"',
        "value=$GREETING",
        "1", "2",
        "644 /etc/x.conf", "600 /multi/one",
        "ls: /dev/pipes: No such file or directory"]
    # the script's RUN ran the mounted file; the history shows that command
    history = env.ok("history", "--no-trunc", "--format", "{{.CreatedBy}}", "heredocs")
    assert "/bin/sh -c /dev/pipes/EOF" in history
    # a second build is fully cached; changing a heredoc's content is a cache miss (for that
    # step and the ones after it: the 4 RUN steps before it stay cached)
    again = env.build("heredocs2", HEREDOCS)
    assert again.stdout.count("Using cache") == 7, again.stdout
    changed = env.build("heredocs3", HEREDOCS.replace("value=$GREETING \"", "v=$GREETING \""))
    assert changed.returncode == 0 and changed.stdout.count("Using cache") == 4
    assert env.run("heredocs3", "cat", "/etc/x.conf").strip() == 'v=hello "quoted"'


def test_escape_directive_legacy_label_args_expansion(env):
    df = ("# escape=`\n"
          "FROM busybox\n"
          "ENV GOPATH \\go\n"
          "ENV WIN=C:\\Windows QUOTED=\"a `\"b`\"\"\n"
          "LABEL legacy value with  spaces\n"
          "ARG a b=c\n"
          "ARG X=\"a b\"\n"
          "ARG V=/usr/local/file.tar.gz\n"
          "ENV BASE=${V##*/} STEM=${V%%.*} DIR=${V%/*} NOSLASH=${V//`//_} ONE=${V/l/L} `\n"
          "    PRE=${V#/usr}\n"
          "RUN echo \"$X|$a|$b|$GOPATH|$WIN\" > /o\n")
    r = env.build("escapes", df, "--build-arg", "a=A")
    assert r.returncode == 0, r.stdout + r.stderr
    assert env.run("escapes", "cat", "/o").strip() == "a b|A|c|\\go|C:\\Windows"
    cfg = env.inspect("escapes")["Config"]
    e = dict(x.split("=", 1) for x in cfg["Env"])
    assert e["GOPATH"] == "\\go" and e["WIN"] == "C:\\Windows" and e["QUOTED"] == 'a "b"'
    assert (e["BASE"], e["STEM"], e["DIR"], e["NOSLASH"], e["ONE"], e["PRE"]) == (
        "file.tar.gz", "/usr/local/file", "/usr/local", "_usr_local_file.tar.gz",
        "/usr/Local/file.tar.gz", "/local/file.tar.gz")
    assert cfg["Labels"]["legacy"] == "value with  spaces"


def test_required_variable_error_names_it(env):
    r = env.build("required", "FROM busybox\nARG NEED\nENV X=\"${NEED:?set NEED please}\"\n")
    assert r.returncode != 0 and "NEED: set NEED please" in r.stdout + r.stderr
    ok = env.build("required2", "FROM busybox\nARG NEED\nENV X=\"${NEED:?set NEED please}\"\n",
                   "--build-arg", "NEED=1")
    assert ok.returncode == 0, ok.stdout + ok.stderr


def test_parse_errors_come_before_any_step(env):
    r = env.build("late-error", "FROM busybox\nRUN touch /x\nRUN echo ran\nENV PATH\n")
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert "dockerfile parse error on line 4" in out and "ENV must have two arguments" in out
    assert "Step 1/" not in out and "ran" not in out.replace("ENV", "")
    r = env.build("json-error", 'FROM busybox\nRUN true\nCMD ["a", ["b"]]\n')
    assert r.returncode != 0 and "line 3" in r.stdout + r.stderr
    assert "arrays must be comprised of strings only" in r.stdout + r.stderr


def test_run_network_flag(env):
    r = env.build("netnone", "FROM busybox\nRUN --network=none ls /sys/class/net > /nets\n"
                  "RUN --network=default true\n")
    assert r.returncode == 0, r.stdout + r.stderr
    assert env.run("netnone", "cat", "/nets").split() == ["lo"]
    df = "FROM busybox\nRUN true\nRUN --network=host cat /proc/net/route > /route\n"
    r = env.build("nethost", df)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "needs the network.host entitlement" in out
    assert "line 3" in out and "Step 1/" not in out     # refused before any step runs
    r = env.build("nethost", df, "--allow", "bogus")
    assert r.returncode != 0 and "invalid entitlement 'bogus'" in r.stdout + r.stderr
    # granted: the step sees the host's routes (the loopback-only namespace has none)
    r = env.build("nethost", df, "--allow", "network.host")
    assert r.returncode == 0, r.stdout + r.stderr
    host_ifaces = {ln.split()[0] for ln in Path("/proc/net/route").read_text().splitlines()[1:]}
    seen = {ln.split()[0] for ln in env.run("nethost", "cat", "/route").splitlines()[1:]}
    assert host_ifaces and seen & host_ifaces
    r = env.build("netnone2", "FROM busybox\nRUN cat /proc/net/route > /route\n",
                  "--allow", "network.host")
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(env.run("netnone2", "cat", "/route").splitlines()) == 1   # header only
    # a base image's ONBUILD trigger is checked when it runs
    r = env.build("onb", "FROM busybox\nONBUILD RUN --network=host true\n")
    assert r.returncode == 0, r.stdout + r.stderr
    r = env.build("onbchild", "FROM onb\nRUN true\n")
    assert r.returncode != 0 and "needs the network.host entitlement" in r.stdout + r.stderr


def test_predefined_platform_args(env):
    from aiorun.images.build.platforms import host_platform
    os_, arch, variant = host_platform()
    plat = "/".join(p for p in (os_, arch, variant) if p)
    df = ("ARG BASE=busybox\n"
          "FROM --platform=$BUILDPLATFORM ${BASE}:latest AS b\n"
          "RUN echo \"[$TARGETARCH]\" > /before\n"
          "ARG TARGETARCH\n"
          "ARG TARGETPLATFORM BUILDOS\n"
          "RUN echo \"$TARGETARCH $TARGETPLATFORM $BUILDOS\" > /after\n")
    r = env.build("platargs", df)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "were not consumed" not in r.stdout
    assert env.run("platargs", "cat", "/before", "/after").splitlines() == [
        "[]", f"{arch} {plat} {os_}"]
    r = env.build("otherplat", "FROM busybox\nRUN true\nFROM --platform=windows/amd64 busybox\n")
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "aiorun builds only for this machine's platform" in out
    assert "line 3" in out and "Step 1/" not in out


MOUNTS = """\
FROM busybox
RUN --mount=type=tmpfs,target=/scratch sh -c \
    'echo x > /scratch/f && grep " /scratch " /proc/mounts | cut -d" " -f3 > /tmpfs-type'
RUN --mount=type=cache,target=/var/cache/app,id=appcache \
    sh -c 'echo run >> /var/cache/app/log; wc -l < /var/cache/app/log | tr -d " " > /count'
RUN --mount=type=secret,id=tok,required \
    sh -c '[ "$(md5sum < /run/secrets/tok | cut -c1-32)" = "MD5" ] && \
           stat -c %a /run/secrets/tok > /sec'
RUN --mount=type=secret,id=tok,target=/etc/tok,mode=0440 stat -c %a /etc/tok > /sec2
RUN --mount=type=secret,id=missing sh -c 'test -e /run/secrets/missing || echo absent > /miss'
RUN --mount=type=bind,source=data,target=/data \
    sh -c 'cat /data/a > /bound; test -e /data/hidden || echo ignored >> /bound'
"""


def test_run_mounts(env, tmp_path):
    secret = tmp_path / "tok"
    secret.write_text("s3cret-value")
    files = {".dockerignore": "data/hidden\n"}

    def build(name: str, *flags: str, a: str = "A1"):
        ctx = env.base / f"ctx-{name}"
        (ctx / "data").mkdir(parents=True)
        (ctx / "data" / "a").write_text(a + "\n")
        (ctx / "data" / "hidden").write_text("no")
        md5 = hashlib.md5(b"s3cret-value").hexdigest()
        return env.build(name, MOUNTS.replace("MD5", md5), "--secret", f"id=tok,src={secret}", *flags,
                         files=files)

    r = build("mounts")
    assert r.returncode == 0, r.stdout + r.stderr
    out = env.run("mounts", "sh", "-c", "cat /tmpfs-type /count /sec /sec2 /miss /bound; "
                  "for p in /scratch /etc/tok /data /run/secrets/tok; do "
                  "test -e $p && echo LEFT $p; done; true")
    assert out.splitlines() == ["tmpfs", "1", "400", "440", "absent", "A1", "ignored"]
    # the secret is nowhere in the image store or the history
    assert "s3cret" not in env.ok("history", "--no-trunc", "mounts")
    for f in env.paths.root.rglob("*"):
        if f.is_file() and not f.is_symlink():
            assert b"s3cret-value" not in f.read_bytes(), f
    assert not list(env.paths.tmp.glob("build-*")), "a build work directory is left"
    # the cache mount persists between builds; a bind mount's content is in the cache key
    r = build("mounts2", "--no-cache")
    assert r.returncode == 0, r.stdout + r.stderr
    assert env.run("mounts2", "cat", "/count").strip() == "2"
    r = build("mounts3", a="A2")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("Using cache") == 5
    assert env.run("mounts3", "cat", "/bound").splitlines() == ["A2", "ignored"]


def test_run_mount_errors(env):
    r = env.build("nosecret", "FROM busybox\nRUN --mount=type=secret,id=x,required true\n")
    assert r.returncode != 0 and "secret x: not found" in r.stdout + r.stderr
    for flag, msg in (("type=ssh,from=x", "ssh mount should not have a from"),
                      ("type=nfs,target=/x", "unsupported mount type 'nfs'"),
                      ("type=tmpfs,target=/x,colour=blue", "unexpected key 'colour'")):
        r = env.build(f"bad{abs(hash(flag))}", f"FROM busybox\nRUN true\n"
                      f"RUN --mount={flag} true\n")
        out = r.stdout + r.stderr
        assert r.returncode != 0 and "line 3" in out and msg in out, out
        assert "Step 1/" not in out


def test_run_mount_bind_from_stage_and_image(env):
    df = ("FROM busybox AS build\n"
          "RUN mkdir /out && echo built > /out/artifact\n"
          "FROM busybox AS unused\n"     # no stage needs it: skipped (it would fail)
          "RUN false\n"
          "FROM busybox\n"              # needs "build" only through RUN --mount from=
          "RUN --mount=type=bind,from=build,source=/out,target=/in cat /in/artifact > /got\n"
          "RUN --mount=type=bind,from=build,source=/out,target=/in,rw \\\n"
          "    sh -c 'echo scribble > /in/new && cat /in/artifact /in/new > /got2'\n"
          "RUN --mount=type=bind,from=busybox,target=/bb test -x /bb/bin/sh && echo img > /got3\n"
          "RUN --mount=type=bind,target=/ctx,rw sh -c 'echo x > /ctx/w && ls /ctx > /ctxls'\n")
    r = env.build("bindfrom", df, files={"f1": "1"})
    assert r.returncode == 0, r.stdout + r.stderr
    out = env.run("bindfrom", "sh", "-c", "cat /got /got2 /got3 /ctxls; "
                  "for p in /in /bb /ctx /out; do test -e $p && echo LEFT $p; done; true")
    assert out.splitlines() == ["built", "built", "scribble", "img", "Dockerfile", "f1", "w"]


def test_docker_cli_classic_builder_sends_the_new_syntax(env, tmp_path):
    """``DOCKER_BUILDKIT=0 docker build`` leaves the Dockerfile to the daemon: heredocs,
    RUN --mount and the escape directive work through it; a parse error names the line."""
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker CLI on PATH")
    denv = dict(os.environ, DOCKER_HOST=f"unix://{env.paths.socket}", DOCKER_BUILDKIT="0",
                DOCKER_CONFIG=str(tmp_path / "dockercfg"))
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        "# escape=`\nFROM busybox\nENV WIN=C:\\Windows\n"
        "RUN --mount=type=tmpfs,target=/t <<EOF\necho \"$WIN\" > /t/x && cat /t/x > /y\nEOF\n"
        'CMD ["cat", "/y"]\n')
    r = subprocess.run([docker, "build", "-t", "dk-lang", str(ctx)], env=denv,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert env.run("dk-lang") == "C:\\Windows\n"
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN true\nCMD [1]\n")
    r = subprocess.run([docker, "build", "-t", "dk-bad", str(ctx)], env=denv,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "line 3" in r.stderr and "strings only" in r.stderr


@pytest.fixture
def agent(tmp_path):
    """A real ssh-agent of this test's (its socket in tmp_path) holding one new key; yields
    (socket path, the key's fingerprint)."""
    sock = tmp_path / "agent.sock"
    proc = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if sock.exists():
                break
            time.sleep(0.05)
        key = tmp_path / "id_test"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "aiorun-test",
                        "-f", str(key)], check=True)
        subprocess.run(["ssh-add", "-q", str(key)], check=True, capture_output=True,
                       env=dict(os.environ, SSH_AUTH_SOCK=str(sock)))
        fp = subprocess.run(["ssh-keygen", "-lf", f"{key}.pub"], check=True,
                            capture_output=True, text=True).stdout.split()[1]
        yield sock, fp
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _ssh_tools(ctx: Path) -> None:
    """The host's real ssh-add and the libraries it links (busybox has no ssh client), put
    in the context: the RUN step bind-mounts them and runs ssh-add through the loader."""
    t = ctx / "sshtools"
    t.mkdir(parents=True, exist_ok=True)
    shutil.copy2("/usr/bin/ssh-add", t / "ssh-add")
    for ln in subprocess.run(["ldd", "/usr/bin/ssh-add"], capture_output=True, text=True,
                             check=True).stdout.splitlines():
        parts = ln.split()
        lib = parts[2] if "=>" in parts and len(parts) > 2 else parts[0]
        if lib.startswith("/"):
            shutil.copy2(lib, t / ("ld.so" if "ld-linux" in lib else os.path.basename(lib)))


SSH_ADD = "/t/ld.so --library-path /t /t/ssh-add -l"
SSH = f"""\
FROM busybox
RUN --mount=type=bind,source=sshtools,target=/t --mount=type=ssh \\
    sh -c 'echo "$SSH_AUTH_SOCK" > /sock && {SSH_ADD} > /keys'
RUN --mount=type=bind,source=sshtools,target=/t --mount=type=ssh,id=other,target=/a.sock \\
    sh -c 'echo "$SSH_AUTH_SOCK" > /sock2 && {SSH_ADD} > /keys2'
RUN --mount=type=ssh,id=absent sh -c 'test -e /run/buildkit/ssh_agent.0 || echo skipped > /absent'
RUN --mount=type=ssh stat -c '%u:%g %a' /run/buildkit/ssh_agent.0 > /perm
RUN mkdir /out && chown 1000 /out
USER 1000:1000
RUN --mount=type=bind,source=sshtools,target=/t --mount=type=ssh,uid=1000,mode=0640 \
    sh -c 'stat -c "%u:%g %a" $SSH_AUTH_SOCK > /out/perm2 && {SSH_ADD} > /out/keys3'
RUN --mount=type=bind,source=sshtools,target=/t --mount=type=ssh \
    sh -c '{SSH_ADD} > /out/keys4 2>&1 || echo refused >> /out/keys4'
"""


def test_run_mount_ssh_with_a_real_agent(env, agent):
    sock, fp = agent
    ctx = env.base / "ctx-sshb"
    _ssh_tools(ctx)
    r = env.build("sshb", SSH, "--ssh", "default", "--ssh", f"other={sock}",
                  extra_env={"SSH_AUTH_SOCK": str(sock)})
    assert r.returncode == 0, r.stdout + r.stderr
    out = env.run("sshb", "sh", "-c", "cat /sock /sock2 /absent /perm /out/perm2; "
                  "cut -d' ' -f2 /keys /keys2 /out/keys3; tail -1 /out/keys4; "
                  "for p in /run/buildkit /a.sock /t; do test -e $p && echo LEFT $p; done; "
                  "true")
    # BuildKit's socket owner and mode: 0:0 0600 by default (a non-root step cannot use it),
    # as asked with uid/gid/mode
    assert out.splitlines() == ["/run/buildkit/ssh_agent.0", "/a.sock", "skipped", "0:0 600",
                                "1000:0 640", fp, fp, fp, "refused"]
    # required without a forwarded agent: the step fails, naming the ID
    r = env.build("sshreq", "FROM busybox\nRUN --mount=type=ssh,required true\n")
    assert r.returncode != 0 and "ssh default: no SSH agent forwarded" in r.stdout + r.stderr
    # the CLI's own checks: no SSH_AUTH_SOCK, a path that is no socket
    r = env.build("sshnone", "FROM busybox\n", "--ssh", "default",
                  extra_env={"SSH_AUTH_SOCK": ""})
    assert r.returncode != 0 and "make sure SSH_AUTH_SOCK is set" in r.stderr
    r = env.build("sshkey", "FROM busybox\n", "--ssh", f"k={ctx / 'sshtools' / 'ssh-add'}")
    assert r.returncode != 0 and "forwards ssh-agent sockets only" in r.stderr


CACHE_FROM = """\
FROM busybox AS seed
ARG V=one
RUN mkdir -p /seed/sub && echo "$V" > /seed/sub/f && chown 5:6 /seed/sub/f
FROM busybox
RUN --mount=type=cache,target=/c,from=seed,source=/seed,id=sc \\
    sh -c 'cat /c/sub/f > /got && stat -c %u:%g /c/sub/f >> /got && echo more >> /c/sub/f'
RUN --mount=type=cache,target=/c,from=seed,source=/seed,id=sc cat /c/sub/f > /got2
RUN --mount=type=cache,target=/bb,from=busybox,source=/bin test -x /bb/sh && echo img > /got3
"""


def test_run_mount_cache_seeded_from_stage_and_image(env):
    r = env.build("cachefrom", CACHE_FROM)
    assert r.returncode == 0, r.stdout + r.stderr
    out = env.run("cachefrom", "sh", "-c", "cat /got /got2 /got3; test -e /c && echo LEFT; "
                  "test -e /seed || echo noseed; true")
    assert out.splitlines() == ["one", "5:6", "one", "more", "img", "noseed"]
    # the cache persists between builds (seeded once; the seed stage is cached: same base) ...
    r = env.build("cachefrom2", CACHE_FROM.replace("FROM busybox\nRUN",
                                                   "FROM busybox\nENV BUMP=1\nRUN"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert env.run("cachefrom2", "cat", "/got2").splitlines() == ["one", "more", "more"]
    # ... and a changed base is a fresh cache, seeded from it
    r = env.build("cachefrom3", CACHE_FROM, "--build-arg", "V=two")
    assert r.returncode == 0, r.stdout + r.stderr
    assert env.run("cachefrom3", "cat", "/got", "/got2").splitlines() == [
        "two", "5:6", "two", "more"]
    r = env.build("cachefrombad", "FROM busybox\n"
                  "RUN --mount=type=cache,target=/c,from=busybox,source=/nope true\n")
    assert r.returncode != 0 and "/nope is not a directory there" in r.stdout + r.stderr

"""Build driving and stages through the real daemon: Dockerfiles outside the context or on
stdin (aiorun CLI, docker CLI, docker-py), repeated query parameters, .dockerignore
exceptions and per-Dockerfile ignore files, the stage graph (skipped stages, concurrent
independent stages, prefixed output, cached non-final stages), COPY --link/--parents/
--exclude, ADD of a loopback URL with --checksum, networkmode/extrahosts/cachefrom, and
stderr marking. Every build is real (busybox base, RUN steps in the runtime).

Network traffic stays on loopback: RUN steps that reach the test's HTTP server run with
``--network host`` and talk to 127.0.0.1; the server binds 127.0.0.1 only.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from aiorun.config import Paths
from aiorun.testing.daemon import CliEnv, start_daemon
from aiorun.testing.images import write_busybox_rootfs_tar
from aiorun.testing.util import wait_until

pytestmark = pytest.mark.integration

DOCKERS = [d for d in ("/usr/local/bin/docker", "/usr/bin/docker") if os.path.exists(d)]


@dataclass
class Env(CliEnv):
    paths: Paths


    def run(self, image: str, *cmd: str) -> str:
        return self.ok("run", "--rm", "--network", "none", image, *cmd)

    def config(self, ref: str) -> dict:
        iid = self.ok("image", "inspect", "--format", "{{.Id}}", ref).strip()
        return json.loads((self.paths.images / "configs" / "sha256" /
                           iid.removeprefix("sha256:")).read_text())

    def layer_names(self, diff_id: str) -> list[str]:
        tar = self.paths.images / "layers" / f"{diff_id.removeprefix('sha256:')}.tar"
        with tarfile.open(tar) as t:
            return sorted(m.name.rstrip("/") for m in t.getmembers())

    def raw_build(self, ctx_tar: bytes, query: list[tuple[str, str]]) -> list[dict]:
        """POST /build with exactly these query parameters (repeats kept)."""
        import http.client
        import socket
        from urllib.parse import urlencode

        class Conn(http.client.HTTPConnection):
            def connect(conn) -> None:
                conn.sock = socket.socket(socket.AF_UNIX)
                conn.sock.connect(str(self.paths.socket))
        c = Conn("aiorun", timeout=120)
        try:
            c.request("POST", "/build?" + urlencode(query), body=ctx_tar,
                      headers={"Content-Type": "application/x-tar"})
            resp = c.getresponse()
            assert resp.status == 200, resp.read()
            return [json.loads(line) for line in resp.read().splitlines() if line.strip()]
        finally:
            c.close()

    def docker(self, docker: str, *args: str, stdin: str | None = None,
               tmp: Path) -> subprocess.CompletedProcess:
        env = dict(os.environ, DOCKER_HOST=f"unix://{self.paths.socket}", DOCKER_BUILDKIT="0",
                   DOCKER_CONFIG=str(tmp / "dockercfg"))
        return subprocess.run([docker, *args], env=env, capture_output=True, text=True,
                              input=stdin, timeout=120)


@pytest.fixture(scope="module", params=[("overlay", "asyncio"), ("copy", "trio")],
                ids=["overlay-asyncio", "copy-trio"])
def env(request, tmp_path_factory) -> Iterator[Env]:
    driver, backend = request.param
    base = tmp_path_factory.mktemp(f"bd-{driver}")
    run = Path(tempfile.mkdtemp(prefix="aiorun-run-", dir="/tmp"))
    paths = Paths(root=base / "root", run=run)
    d = start_daemon(paths, backend=backend, storage_driver=driver)
    e = Env(paths)
    try:
        ctx = base / "bbctx"
        ctx.mkdir()
        write_busybox_rootfs_tar(ctx / "busybox.tar")
        (ctx / "Dockerfile").write_text('FROM scratch\nADD busybox.tar /\nCMD ["sh"]\n')
        e.ok("build", "-q", "-t", "busybox", str(ctx))
        yield e
    finally:
        try:
            for cid in e.ok("ps", "-a", "-q", "--no-trunc").split():
                e.cli("rm", "-f", cid)
        finally:
            d.stop_all()
            subprocess.run(["rm", "-rf", "--one-file-system", str(run)], check=False)


@pytest.fixture
def no_mounts_left(env, tmp_path):
    roots = (str(env.paths.root), str(env.paths.run), str(tmp_path))

    def mine() -> set[str]:
        return {ln.split()[4] for ln in Path("/proc/self/mountinfo").read_text().splitlines()
                if ln.split()[4].startswith(roots)}
    before = mine()
    yield
    assert not (mine() - before), "the test left mounts behind"


class _Handler(http.server.BaseHTTPRequestHandler):
    barrier: threading.Barrier
    files: dict[str, bytes]

    def do_GET(self) -> None:   # noqa: N802 (http.server's name)
        if self.path.startswith("/barrier/"):
            # answers only when two requests have arrived: two RUN steps at the same time
            try:
                self.barrier.wait()
                body = b"together\n"
            except threading.BrokenBarrierError:
                body = b"alone\n"
        elif self.path in self.files:
            body = self.files[self.path]
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def loopback_http() -> Iterator[tuple[int, type[_Handler]]]:
    """An HTTP server on 127.0.0.1 (an ephemeral port): files, and a two-party barrier."""
    handler = type("H", (_Handler,), {"barrier": threading.Barrier(2, timeout=30),
                                      "files": {}})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield srv.server_address[1], handler
    finally:
        srv.shutdown()
        srv.server_close()


def _steps(out: str) -> list[str]:
    return [ln for ln in out.splitlines() if ln.startswith(("Step ", "["))]


# --- driving ------------------------------------------------------------------------------

def test_dockerfile_outside_the_context_and_from_stdin(env, tmp_path, no_mounts_left):
    """-f ../Dockerfile and -f - with a context directory: aiorun's CLI and both docker CLIs
    (whose context tar ends right after the added Dockerfile's data, without padding)."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "f").write_text("in-context\n")
    df = tmp_path / "Dockerfile"
    df.write_text("FROM busybox\nCOPY . /all/\nRUN cat /all/f\n")
    env.ok("build", "-t", "outside:1", "-f", str(df), str(ctx))
    env.ok("build", "-t", "outside:2", "-f", "-", str(ctx), input=df.read_text())
    for tag in ("outside:1", "outside:2"):
        # the Dockerfile added to the context is never copied by COPY .
        assert env.run(tag, "ls", "-A", "/all").split() == ["f"]
    r = env.cli("build", "-f", "-", "-", input=df.read_text())
    assert r.returncode == 1 and "can't use stdin for both build context and dockerfile" \
        in r.stderr
    for i, docker in enumerate(DOCKERS):
        r = env.docker(docker, "build", "-t", f"dk-outside:{i}", "-f", str(df), str(ctx),
                       tmp=tmp_path)
        assert r.returncode == 0, r.stderr
        r = env.docker(docker, "build", "-t", f"dk-stdin:{i}", "-f", "-", str(ctx),
                       stdin=df.read_text(), tmp=tmp_path)
        assert r.returncode == 0, r.stderr
        assert env.run(f"dk-stdin:{i}", "ls", "-A", "/all").split() == ["f"]


def test_a_repeated_query_parameter_takes_the_first_value(env, tmp_path, no_mounts_left):
    """docker-py sends dockerfile= twice; Docker's server (Go's FormValue) takes the first."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "first.Dockerfile").write_text('FROM busybox\nLABEL which=first\n')
    (ctx / "second.Dockerfile").write_text('FROM busybox\nLABEL which=second\n')
    import io
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for n in ("first.Dockerfile", "second.Dockerfile"):
            t.add(ctx / n, n)
    msgs = env.raw_build(buf.getvalue(), [("dockerfile", "first.Dockerfile"),
                                          ("dockerfile", "second.Dockerfile"),
                                          ("t", "twice:1"), ("t", "twice:2")])
    assert not [m for m in msgs if "error" in m], msgs
    assert env.config("twice:1")["config"]["Labels"] == {"which": "first"}
    assert env.config("twice:2")["config"]["Labels"] == {"which": "first"}   # t repeats
    # docker-py with a Dockerfile outside the context sends dockerfile=<name> and then
    # dockerfile=<its content> (a tuple it encodes as two values)
    outside = tmp_path / "py.Dockerfile"
    outside.write_text("FROM busybox\nLABEL which=outside\n")
    import docker as dockerpy
    client = dockerpy.DockerClient(base_url=f"unix://{env.paths.socket}")
    try:
        img, _ = client.images.build(path=str(ctx), dockerfile=str(outside), tag="py-df:1")
        assert img.labels == {"which": "outside"}
        img, _ = client.images.build(path=str(ctx), dockerfile="second.Dockerfile",
                                     tag="py-df:2")
        assert img.labels == {"which": "second"}
    finally:
        client.close()


def test_dockerignore_exceptions_and_per_dockerfile_ignore(env, tmp_path, no_mounts_left):
    ctx = tmp_path / "ctx"
    (ctx / "build" / "keep").mkdir(parents=True)
    (ctx / "build" / "junk").write_text("junk")
    (ctx / "build" / "keep" / "k").write_text("k")
    (ctx / "build" / "k2").write_text("k2")
    (ctx / "other").write_text("o")
    (ctx / ".dockerignore").write_text("build\n!build/keep\n!build/k2\n")
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY build /b/\nCOPY . /all/\n")
    env.ok("build", "-t", "ign:1", str(ctx))
    assert env.run("ign:1", "find", "/b").split() == ["/b", "/b/k2", "/b/keep", "/b/keep/k"]
    found = env.run("ign:1", "find", "/all/build").split()
    assert sorted(found) == ["/all/build", "/all/build/k2", "/all/build/keep",
                             "/all/build/keep/k"]
    # <Dockerfile>.dockerignore next to the Dockerfile replaces the context's .dockerignore,
    # for what the CLI sends and for what COPY sees (the docker CLI sends it as is: the
    # daemon finds it next to the Dockerfile)
    (ctx / "sub").mkdir()
    (ctx / "sub" / "app.Dockerfile").write_text("FROM busybox\nCOPY . /all/\n")
    (ctx / "sub" / "app.Dockerfile.dockerignore").write_text("other\nsub\n")
    env.ok("build", "-t", "ign:2", "-f", str(ctx / "sub" / "app.Dockerfile"), str(ctx))
    listing = env.run("ign:2", "ls", "-A", "/all").split()
    assert "other" not in listing and "build" in listing and "sub" not in listing
    assert env.run("ign:2", "ls", "/all/build").split() == ["junk", "k2", "keep"]
    for i, docker in enumerate(DOCKERS[:1]):
        r = env.docker(docker, "build", "-t", "dk-ign", "-f",
                       str(ctx / "sub" / "app.Dockerfile"), str(ctx), tmp=tmp_path)
        assert r.returncode == 0, r.stderr
        listing = env.run("dk-ign", "ls", "-A", "/all").split()
        assert "other" not in listing and "build" in listing


# --- stages ---------------------------------------------------------------------------------

def test_stages_graph_skips_builds_concurrently_and_caches(env, tmp_path, loopback_http,
                                                         no_mounts_left):
    """Two independent stages meet at a barrier of the test's loopback server: the build
    succeeds only if they run at the same time. A stage the target does not need (it would
    fail) is skipped. Output lines are prefixed by stage; a second build takes every step of
    every stage from the cache."""
    port, _h = loopback_http
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        "FROM busybox AS left\n"
        f"RUN wget -q -O /got http://127.0.0.1:{port}/barrier/left && grep together /got\n"
        "FROM busybox AS right\n"
        f"RUN wget -q -O /got http://127.0.0.1:{port}/barrier/right && grep together /got\n"
        "FROM busybox AS broken\n"
        "RUN echo this stage must not run; exit 1\n"
        "FROM busybox\n"
        "COPY --from=left /got /left\n"
        "COPY --from=right /got /right\n")
    out = env.ok("build", "--network", "host", "-t", "graph:1", str(ctx), timeout=120)
    assert "must not run" not in out and "[broken" not in out
    steps = _steps(out)
    assert "[left 2/2] RUN wget -q -O /got " \
           f"http://127.0.0.1:{port}/barrier/left && grep together /got" in steps
    assert "[stage-3 3/3] COPY --from=right /got /right" in steps
    assert "[left] together" in out.splitlines()
    assert env.run("graph:1", "cat", "/left", "/right") == "together\ntogether\n"
    # the non-final stages' steps are cached too (no barrier partner needed any more)
    again = env.ok("build", "--network", "host", "-t", "graph:2", str(ctx))
    assert again.count("Using cache") == 4, again
    # nothing changed: the same image (id), as Docker's builders give, no new <none> image
    ids = {env.ok("image", "inspect", "--format", "{{.Id}}", f"graph:{n}").strip()
           for n in (1, 2)}
    assert len(ids) == 1
    # --target: only what that stage needs; the classic step lines of a one-stage build
    tgt = env.ok("build", "--target", "left", "-t", "graph:left", str(ctx))
    assert _steps(tgt)[0] == "Step 1/2 : FROM busybox AS left" and "Using cache" in tgt


def test_a_failing_stage_fails_the_build_and_leaves_nothing(env, tmp_path, no_mounts_left):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        "FROM busybox AS slow\nRUN sleep 30\n"
        "FROM busybox AS bad\nRUN echo failing; exit 4\n"
        "FROM busybox\nCOPY --from=slow /etc/hostname /a\nCOPY --from=bad /etc/hostname /b\n")
    images_before = env.ok("images", "-a", "-q").split()
    r = env.cli("build", "--no-cache", str(ctx), timeout=60)
    assert r.returncode != 0
    assert "returned a non-zero code: 4" in r.stderr
    assert env.ok("images", "-a", "-q").split() == images_before
    assert not list(env.paths.tmp.glob("build*"))
    (ctx / "Dockerfile").write_text("FROM busybox AS x\nRUN true\nFROM busybox AS X\n")
    r = env.cli("build", str(ctx))
    assert r.returncode != 0 and "duplicate stage name 'X'" in r.stderr
    assert "Step" not in r.stdout      # refused before any step ran


# --- COPY / ADD flags -----------------------------------------------------------------------

def test_copy_link_parents_exclude(env, tmp_path, no_mounts_left):
    ctx = tmp_path / "ctx"
    (ctx / "a" / "b" / "c").mkdir(parents=True)
    (ctx / "a" / "b" / "c" / "f.txt").write_text("f")
    (ctx / "a" / "b" / "c" / "g.log").write_text("g")
    (ctx / "a" / "top.log").write_text("t")
    (ctx / "a" / "keep.log").write_text("k")
    (ctx / "x" / "y").mkdir(parents=True)
    (ctx / "x" / "y" / "z.txt").write_text("z")
    (ctx / "Dockerfile").write_text(
        "FROM busybox\n"
        # each --exclude leaves out what only it names: both must be applied
        "COPY --exclude=top.log --exclude=b/*/g.log a /ex/\n"
        "COPY --parents a/b/c/f.txt x/y/z.txt /par/\n"
        "COPY --parents ./a/./b/c/f.txt /piv/\n"
        "RUN ln -s /etc /linkdir\n"
        "COPY --link --chown=1000:1000 x /linkdir/\n")
    env.ok("build", "-t", "flags:1", str(ctx))
    assert sorted(env.run("flags:1", "find", "/ex").split()) == [
        "/ex", "/ex/b", "/ex/b/c", "/ex/b/c/f.txt", "/ex/keep.log"]
    assert sorted(env.run("flags:1", "find", "/par", "-type", "f").split()) == [
        "/par/a/b/c/f.txt", "/par/x/y/z.txt"]
    assert env.run("flags:1", "find", "/piv", "-type", "f").split() == ["/piv/b/c/f.txt"]
    # --link: its layer holds only what it copied, written over nothing (the /linkdir
    # symlink of the previous layer is not followed: the layer has a real /linkdir)
    cfg = env.config("flags:1")
    last = cfg["rootfs"]["diff_ids"][-1]
    assert env.layer_names(last) == ["linkdir", "linkdir/y", "linkdir/y/z.txt"]
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY --link --chown=nobody x /x/\n")
    r = env.cli("build", str(ctx))
    assert r.returncode != 0 and "use numeric ids" in r.stderr


def test_add_url_with_checksum(env, tmp_path, loopback_http, no_mounts_left):
    port, handler = loopback_http
    payload = b"downloaded content\n"
    handler.files["/files/data.txt"] = payload
    good = "sha256:" + hashlib.sha256(payload).hexdigest()
    bad = "sha256:" + "0" * 64
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "local.txt").write_text("l")
    url = f"http://127.0.0.1:{port}/files/data.txt"
    (ctx / "Dockerfile").write_text(f"FROM busybox\nADD --checksum={good} {url} /dl/\n")
    env.ok("build", "-t", "addurl:1", str(ctx))
    assert env.run("addurl:1", "stat", "-c", "%a %n", "/dl/data.txt") == "600 /dl/data.txt\n"
    assert env.run("addurl:1", "cat", "/dl/data.txt") == payload.decode()
    (ctx / "Dockerfile").write_text(f"FROM busybox\nADD --checksum={bad} {url} /dl/\n")
    r = env.cli("build", str(ctx))
    assert r.returncode != 0 and f"digest mismatch {good}: {bad}" in r.stderr
    (ctx / "Dockerfile").write_text(f"FROM busybox\nADD --checksum={good} local.txt /l\n")
    r = env.cli("build", str(ctx))
    assert r.returncode != 0 and "checksum requires HTTP(S) or Git sources" in r.stderr
    (ctx / "Dockerfile").write_text(f"FROM busybox\nADD http://127.0.0.1:{port}/missing /m\n")
    r = env.cli("build", str(ctx))
    assert r.returncode != 0 and "status 404" in r.stderr


# --- build parameters -----------------------------------------------------------------------

def test_network_mode_extra_hosts_and_stderr(env, tmp_path, loopback_http, no_mounts_left):
    port, handler = loopback_http
    handler.files["/ping"] = b"pong\n"
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        "FROM busybox\n"
        f"RUN wget -q -O - http://127.0.0.1:{port}/ping > /net || echo none > /net\n"
        # RUN --network overrides the build's network mode: none stays loopback-only,
        # default is the build's
        f"RUN --network=none wget -q -O - http://127.0.0.1:{port}/ping > /n1 || echo none > /n1\n"
        f"RUN --network=default wget -q -O - http://127.0.0.1:{port}/ping > /n2 || echo none > /n2\n"
        "RUN grep myhost /etc/hosts > /hosts; echo to-stderr >&2\n")
    env.ok("build", "--no-cache", "--add-host", "myhost:10.9.8.7", "-t", "net:none", str(ctx))
    assert env.run("net:none", "cat", "/net", "/n1", "/n2") == "none\n" * 3   # loopback only
    assert env.run("net:none", "cat", "/hosts") == "10.9.8.7\tmyhost\n"
    env.ok("build", "--no-cache", "--network", "host", "-t", "net:host", str(ctx))
    assert env.run("net:host", "cat", "/net", "/n1", "/n2") == "pong\nnone\npong\n"
    r = env.cli("build", "--network", "bridge", str(ctx))
    assert r.returncode != 0 and "networkmode 'bridge' is not supported" in r.stderr
    r = env.cli("build", "--add-host", "x:not-an-ip", str(ctx))
    assert r.returncode != 0 and "invalid IP address in add-host" in r.stderr
    # the docker CLI: --network host, --add-host; RUN's stderr comes marked (red)
    for i, docker in enumerate(DOCKERS[:1]):
        r = env.docker(docker, "build", "--no-cache", "--network", "host", "--add-host",
                       "myhost:10.1.1.1", "-t", "dk-net", str(ctx), tmp=tmp_path)
        assert r.returncode == 0, r.stderr
        assert env.run("dk-net", "cat", "/net", "/hosts") == "pong\n10.1.1.1\tmyhost\n"
        assert "\x1b[91mto-stderr\n\x1b[0m" in r.stdout + r.stderr


def test_cache_from_images(env, tmp_path, no_mounts_left):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nENV A=1\nRUN cat /proc/sys/kernel/random/uuid > /stamp\n"
                                    "RUN echo second > /second\n")
    env.ok("build", "--no-cache", "-t", "cf-src:1", str(ctx))
    stamp = env.run("cf-src:1", "cat", "/stamp")
    shutil.rmtree(env.paths.root / "buildcache")        # no local cache: only --cache-from
    out = env.ok("build", "-t", "cf:1", str(ctx))
    assert "Using cache" not in out
    assert env.run("cf:1", "cat", "/stamp") != stamp
    shutil.rmtree(env.paths.root / "buildcache")
    out = env.ok("build", "--cache-from", "cf-src:1", "--cache-from", "nosuch:1",
                 "-t", "cf:2", str(ctx))
    assert out.count("Using cache") == 2
    assert "--cache-from image nosuch:1 not found, skipping" in out
    assert env.run("cf:2", "cat", "/stamp") == stamp
    assert env.config("cf:2")["rootfs"] == env.config("cf-src:1")["rootfs"]
    # what --cache-from gave is in the local cache now
    assert env.ok("build", "-t", "cf:2b", str(ctx)).count("Using cache") == 2
    # a changed step before breaks the chain
    (ctx / "Dockerfile").write_text("FROM busybox\nENV A=2\nRUN cat /proc/sys/kernel/random/uuid > /stamp\n")
    shutil.rmtree(env.paths.root / "buildcache")
    out = env.ok("build", "--cache-from", "cf-src:1", "-t", "cf:3", str(ctx))
    assert "Using cache" not in out


def _sleepers(marker: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").strip() \
                    == f"sleep {marker}".encode():
                found.append(int(pid))
        except OSError:
            continue
    return found


def test_client_gone_during_concurrent_stages_stops_them_all(env, tmp_path, no_mounts_left):
    """The client goes away while two stages' RUN steps run: both processes are killed and
    every snapshot and work directory removed."""
    import time
    marker = f"{900 + os.getpid() % 97}.5"
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        f"FROM busybox AS a\nRUN echo started-a; sleep {marker}\n"
        f"FROM busybox AS b\nRUN echo started-b; sleep {marker}\n"
        "FROM busybox\nCOPY --from=a /etc/hostname /a\nCOPY --from=b /etc/hostname /b\n")
    proc = subprocess.Popen([str(Path(sys.executable).with_name("aiorun")), "build",
                             "--no-cache", str(ctx)], stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, AIORUN_ROOT=str(env.paths.root),
                                     AIORUN_RUN=str(env.paths.run)))
    try:
        seen = set()
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(("[a] started", "[b] started")):
                seen.add(line[:3])
                if len(seen) == 2:
                    break
        # "started" is echoed before the shell forks the sleep
        wait_until(lambda: len(_sleepers(marker)) == 2, 10, "both stages' sleeps")
        proc.kill()
        proc.wait(10)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and (
                _sleepers(marker) or list(env.paths.tmp.glob("build*"))):
            time.sleep(0.05)
        assert not _sleepers(marker)
        assert not list(env.paths.tmp.glob("build*"))
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in _sleepers(marker):
            os.kill(pid, 9)

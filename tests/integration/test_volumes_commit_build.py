"""Volumes, commit and build through the real daemon and CLI, on overlay and on copy.

One daemon per (storage driver, backend) for the module: overlay under asyncio, copy under trio,
so both drivers and both event loops are exercised without running everything four times.
The busybox image is itself built by the builder (``FROM scratch`` + ``ADD busybox.tar /``:
ADD auto-extracts a local tar).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from aiorun.api.client import Client
from aiorun.config import Paths
from aiorun.testing.daemon import CliEnv, start_daemon
from aiorun.testing.util import wait_until
from aiorun.testing.images import write_busybox_rootfs_tar

pytestmark = pytest.mark.integration


@dataclass
class Env(CliEnv):
    paths: Paths
    driver: str


    def image_config(self, ref_id: str) -> dict:
        h = ref_id.strip().removeprefix("sha256:")
        return json.loads((self.paths.images / "configs" / "sha256" / h).read_text())

    def layer_names(self, diff_id: str) -> list[str]:
        tar = self.paths.images / "layers" / f"{diff_id.removeprefix('sha256:')}.tar"
        with tarfile.open(tar) as t:
            return [m.name.rstrip("/") for m in t.getmembers()]

    def events(self) -> list[dict]:
        r = Client(self.paths.socket).request("GET", "/events",
                                              {"since": "0", "until": str(int(time.time()) + 1)})
        try:
            return [json.loads(line) for line in r.iter_lines()]
        finally:
            r.close()


def _containers(env: Env) -> list[str]:
    return env.ok("ps", "-a", "-q", "--no-trunc").split()


@pytest.fixture(scope="module", params=[("overlay", "asyncio"), ("copy", "trio")],
                ids=["overlay-asyncio", "copy-trio"])
def env(request, tmp_path_factory):
    driver, backend = request.param
    base = tmp_path_factory.mktemp(f"h7-{driver}")
    run = Path(tempfile.mkdtemp(prefix="aiorun-run-", dir="/tmp"))
    paths = Paths(root=base / "root", run=run)
    d = start_daemon(paths, backend=backend, storage_driver=driver)
    e = Env(paths, driver)
    try:
        ctx = base / "bbctx"
        ctx.mkdir()
        write_busybox_rootfs_tar(ctx / "busybox.tar")
        (ctx / "Dockerfile").write_text('FROM scratch\nADD busybox.tar /\nCMD ["sh"]\n')
        e.ok("build", "-q", "-t", "busybox", str(ctx))
        yield e
    finally:
        try:
            for cid in _containers(e):
                e.cli("rm", "-f", "-v", cid)
        finally:
            d.stop_all()
            subprocess.run(["rm", "-rf", "--one-file-system", str(run)], check=False)


@pytest.fixture
def own_host_state(env, tmp_path):
    """Fails the test if it left mounts under this module's roots or the test's tmp dir.

    (The conftest ``host_state`` compares the whole host, which other suites running at the
    same time on this machine change; these tests make no links/nft/netns: ``--network none``.)
    """
    roots = (str(env.paths.root), str(env.paths.run), str(tmp_path))

    def mine() -> set[str]:
        out = set()
        for ln in Path("/proc/self/mountinfo").read_text().splitlines():
            mp = ln.split()[4]
            if mp.startswith(roots):
                out.add(mp)
        return out
    before = mine()
    yield
    leaked = mine() - before
    assert not leaked, f"test left mounts behind: {sorted(leaked)}"


def _wait_for(path: Path, timeout: float = 10.0) -> None:
    wait_until(path.exists, timeout, f"{path} to appear")


# --- volumes ------------------------------------------------------------------------------------

def test_bind_mount_is_written_and_invisible_on_host(env, tmp_path, own_host_state):
    host = tmp_path / "hostdir"
    name = f"b{secrets.token_hex(4)}"
    env.ok("run", "-d", "--network", "none", "--name", name, "-v", f"{host}:/test", "busybox",
           "sh", "-c", "echo from-container > /test/f; sleep 30")
    try:
        _wait_for(host / "f")
        assert (host / "f").read_text() == "from-container\n"
        # the bind mount exists only in the container's mount namespace
        mountinfo = Path("/proc/self/mountinfo").read_text()
        assert not [ln for ln in mountinfo.splitlines()
                    if ln.split()[4].endswith("/test") or str(host) in ln.split()[3:5]]
        info = json.loads(env.ok("inspect", name))[0]
        assert {"Type": "bind", "Source": str(host), "Destination": "/test", "RW": True} \
            .items() <= info["Mounts"][0].items()
    finally:
        env.cli("rm", "-f", name)


def test_mount_flag_tmpfs_readonly_volume(env, tmp_path, own_host_state):
    vol = f"mv{secrets.token_hex(3)}"
    host = tmp_path / "ro-src"
    host.mkdir()
    try:
        out = env.ok("run", "--rm", "--network", "none",
                     "--mount", "type=tmpfs,target=/t,tmpfs-size=1m",
                     "--mount", f"type=volume,source={vol},target=/mv,readonly",
                     "--mount", f"type=bind,source={host},target=/hb,readonly",
                     "--tmpfs", "/run2:size=2m", "busybox", "sh", "-c",
                     "grep -E ' /(t|mv|hb|run2) ' /proc/mounts | cut -d' ' -f2-4 | sort;"
                     " touch /mv/x 2>/dev/null || echo mv-ro; touch /hb/x 2>/dev/null || echo hb-ro")
        lines = out.splitlines()
        assert lines[-2:] == ["mv-ro", "hb-ro"]
        mounts = {ln.split()[0]: ln.split() for ln in lines[:-2]}
        assert mounts["/t"][1] == "tmpfs" and "size=1024k" in mounts["/t"][2]
        assert mounts["/run2"][1] == "tmpfs" and "size=2048k" in mounts["/run2"][2]
        assert mounts["/mv"][2].startswith("ro") and mounts["/hb"][2].startswith("ro")
        # local-driver options: a named volume that is an existing host directory / a tmpfs
        dev = tmp_path / "device"
        dev.mkdir()
        env.ok("volume", "create", "-o", "type=none", "-o", "o=bind", "-o", f"device={dev}",
               f"{vol}b")
        env.ok("volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs", "-o", "o=size=3m",
               f"{vol}t")
        out = env.ok("run", "--rm", "--network", "none", "-v", f"{vol}b:/b", "-v", f"{vol}t:/t",
                     "busybox", "sh", "-c", "echo via-volume > /b/f; grep ' /t ' /proc/mounts")
        assert (dev / "f").read_text() == "via-volume\n" and "size=3072k" in out
        r = env.cli("run", "--rm", "--network", "none", "--mount",
                    f"type=bind,source={tmp_path / 'missing'},target=/x", "busybox", "true")
        assert r.returncode != 0 and "bind source path does not exist" in r.stderr
        assert not (tmp_path / "missing").exists()
    finally:
        env.cli("volume", "rm", "-f", vol, f"{vol}b", f"{vol}t")


def test_named_anonymous_seeding_in_use_and_rm_v(env, tmp_path, own_host_state):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN mkdir -p /data && echo seeded > /data/s\n"
                                    "VOLUME /data\n")
    env.ok("build", "-q", "-t", "volimg", str(ctx))
    vol = f"named{secrets.token_hex(3)}"
    name = f"v{secrets.token_hex(4)}"
    out = env.ok("run", "--network", "none", "--name", name, "-v", f"{vol}:/n", "volimg",
                 "sh", "-c", "cat /data/s; echo x > /n/f; echo y > /data/new")
    assert out == "seeded\n"
    mounts = {m["Destination"]: m for m in json.loads(env.ok("inspect", name))[0]["Mounts"]}
    anon = mounts["/data"]["Name"]
    assert len(anon) == 64 and mounts["/data"]["Type"] == "volume"
    anon_dir = env.paths.volumes / anon / "_data"
    assert Path(mounts["/data"]["Source"]) == anon_dir
    assert (anon_dir / "s").read_text() == "seeded\n" and (anon_dir / "new").read_text() == "y\n"
    assert (env.paths.volumes / vol / "_data" / "f").read_text() == "x\n"
    assert sorted(env.ok("volume", "ls", "-q").split()) == sorted([anon, vol])

    r = env.cli("volume", "rm", vol)            # used by an exited container: refused
    assert r.returncode != 0 and "in use" in r.stderr
    env.ok("rm", "-v", name)                    # rm -v: anonymous gone, named stays
    assert not (env.paths.volumes / anon).exists()
    assert env.ok("volume", "ls", "-q").split() == [vol]
    assert json.loads(env.ok("volume", "inspect", vol))[0]["Name"] == vol
    env.ok("volume", "rm", vol)
    assert env.ok("volume", "ls", "-q").split() == []

    actions = {(e["Type"], e["Action"], e["Actor"]["ID"]) for e in env.events()}
    for a in ("create", "mount", "unmount", "destroy"):
        assert ("volume", a, vol) in actions and ("volume", a, anon) in actions, a


def test_hostile_symlinks_cannot_redirect_mounts(env, tmp_path, own_host_state):
    mark = f"h7-escape-{secrets.token_hex(4)}"
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        f"FROM busybox\nRUN ln -s /etc /test && mkdir /tmp/{mark} && "
        f"ln -s ../../../../../../../../tmp/{mark} /up && ln -s /{mark} /dangling && "
        f"ln -s /etc /seed\n")
    env.ok("build", "-q", "-t", "hostile", str(ctx))
    host = tmp_path / "hostdir"
    vol = f"hv{secrets.token_hex(3)}"
    try:
        out = env.ok("run", "--rm", "--network", "none", "-v", f"{host}:/test",
                     "-v", f"{vol}:/up", "hostile",
                     "sh", "-c", f"echo pwned > /test/pwned; echo up > /up/u; ls /etc/pwned "
                                 f"/tmp/{mark}/u")
        # the mounts landed on the rootfs's own /etc and /tmp/<mark>, never the host's
        assert out.split() == ["/etc/pwned", f"/tmp/{mark}/u"]
        assert (host / "pwned").read_text() == "pwned\n"
        assert not Path("/etc/pwned").exists()
        assert not Path(f"/tmp/{mark}").exists()
        assert (env.paths.volumes / vol / "_data" / "u").read_text() == "up\n"
        # a volume seeded through a link copies the image's /etc, never the host's
        seed = f"sv{secrets.token_hex(3)}"
        try:
            env.ok("run", "--rm", "--network", "none", "-v", f"{seed}:/seed", "hostile", "true")
            passwd = (env.paths.volumes / seed / "_data" / "passwd").read_text()
            assert passwd.startswith("root:x:0:0:root:/root:/bin/sh\nnobody:")
            assert passwd != Path("/etc/passwd").read_text()
        finally:
            env.cli("volume", "rm", "-f", seed)
        # COPY through a link in the image lands inside the rootfs; a context link that
        # points at a host file is resolved inside the context (and so not found)
        (ctx / f"{mark}.txt").write_text("copied")
        os.symlink("/etc/passwd", ctx / "hostlink")
        (ctx / "Dockerfile").write_text(f"FROM hostile\nCOPY {mark}.txt /test/\n")
        env.ok("build", "-q", "-t", "hostile2", str(ctx))
        assert not Path(f"/etc/{mark}.txt").exists()
        assert env.ok("run", "--rm", "--network", "none", "hostile2",
                      "cat", f"/etc/{mark}.txt") == "copied"
        (ctx / "Dockerfile").write_text("FROM hostile\nCOPY hostlink /x\n")
        r = env.cli("build", str(ctx))
        assert r.returncode != 0 and "not found in build context" in r.stderr
        # a link to a missing path is refused cleanly; nothing is created on the host
        r = env.cli("run", "--rm", "--network", "none", "-v", f"{tmp_path / 'h2'}:/dangling",
                    "hostile", "true")
        assert r.returncode != 0 and "dangling" in r.stderr
        assert not Path(f"/{mark}").exists()
    finally:
        env.cli("volume", "rm", "-f", vol)


# --- commit ------------------------------------------------------------------------------------

def test_commit_after_exec_changes(env, own_host_state):
    name = f"c{secrets.token_hex(4)}"
    env.ok("run", "-d", "--network", "none", "--name", name, "-v", "/vol", "busybox",
           "sleep", "60")
    try:
        env.ok("exec", name, "sh", "-c", "echo new > /added; echo changed >> /var/www/index.html;"
                                         " rm /etc/group; echo secret > /vol/data;"
                                         " echo 9.9.9.9 >> /etc/hosts")
        iid = env.ok("commit", "-m", "my message", "-a", "me <me@x>",
                     "-c", 'CMD ["cat", "/added"]', "-c", "ENV FOO=bar", name,
                     "docker.io/library/committed:v1").strip()
        assert iid.startswith("sha256:")
        # paused for the diff (freezer), running again afterwards
        info = json.loads(env.ok("inspect", name))[0]
        assert info["State"]["Status"] == "running"
        cid = info["Id"]
        acts = [e["Action"] for e in env.events()
                if e["Type"] == "container" and e["Actor"]["ID"] == cid]
        assert acts.index("pause") < acts.index("unpause") < acts.index("commit")
        env.ok("exec", name, "true")
        env.ok("commit", "--pause=false", name)       # no freeze this time
        acts = [e["Action"] for e in env.events()
                if e["Type"] == "container" and e["Actor"]["ID"] == cid]
        assert acts.count("pause") == 1 and acts.count("commit") == 2
    finally:
        env.cli("rm", "-f", "-v", name)
    cfg = env.image_config(iid)
    assert cfg["config"]["Cmd"] == ["cat", "/added"] and "FOO=bar" in cfg["config"]["Env"]
    assert cfg["history"][-1]["comment"] == "my message"
    assert cfg["history"][-1]["author"] == "me <me@x>" and "empty_layer" not in cfg["history"][-1]
    names = env.layer_names(cfg["rootfs"]["diff_ids"][-1])
    assert "added" in names and "var/www/index.html" in names and "etc/.wh.group" in names
    assert "vol" in names                      # the empty mount point is committed ...
    assert "vol/data" not in names             # ... the volume content is not
    for f in ("etc/hosts", "etc/hostname", "etc/resolv.conf"):
        assert f not in names

    assert env.ok("run", "--rm", "--network", "none", "committed:v1") == "new\n"
    out = env.ok("run", "--rm", "--network", "none", "committed:v1", "sh", "-c",
                 "tail -n1 /var/www/index.html; test -e /etc/group || echo group-gone;"
                 " test -d /vol && ls -A /vol | wc -l")
    assert out.split() == ["changed", "group-gone", "0"]
    commits = [e for e in env.events() if e["Type"] == "container" and e["Action"] == "commit"]
    assert iid in [c["Actor"]["Attributes"]["imageID"] for c in commits]


def test_commit_of_unchanged_container_adds_an_empty_layer(env, own_host_state):
    name = f"u{secrets.token_hex(4)}"
    env.ok("create", "--network", "none", "--name", name, "busybox", "true")
    try:
        iid = env.ok("commit", name).strip()
    finally:
        env.cli("rm", "-f", name)
    cfg = env.image_config(iid)
    base_layers = len(env.image_config(_image_id(env, "busybox:latest"))["rootfs"]["diff_ids"])
    assert len(cfg["rootfs"]["diff_ids"]) == base_layers + 1
    assert env.layer_names(cfg["rootfs"]["diff_ids"][-1]) == []
    # again, from that image: the empty layer is not stacked twice, and the image runs
    env.ok("create", "--network", "none", "--name", name, iid, "true")
    try:
        iid2 = env.ok("commit", name, "twice-empty").strip()
    finally:
        env.cli("rm", "-f", name)
    cfg2 = env.image_config(iid2)
    assert cfg2["rootfs"]["diff_ids"] == cfg["rootfs"]["diff_ids"]
    assert cfg2["history"][-1].get("empty_layer") is True
    assert env.ok("run", "--rm", "--network", "none", "twice-empty", "echo", "runs") == "runs\n"


def test_build_steps_that_change_nothing_are_empty_layers(env, tmp_path, own_host_state):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text('FROM busybox\nRUN true\nRUN ["true"]\nCMD ["echo", "ok"]\n')
    env.ok("build", "-q", "-t", "noop", str(ctx))
    cfg = env.image_config(_image_id(env, "noop:latest"))
    assert [h.get("empty_layer") for h in cfg["history"][-3:]] == [True, True, True]
    assert env.ok("run", "--rm", "--network", "none", "noop") == "ok\n"


def _image_id(env: Env, tag: str) -> str:
    repos = json.loads((env.paths.images / "repositories.json").read_text())
    flat: dict[str, str] = {}

    def walk(o):
        if isinstance(o, dict):
            for k, v in o.items():
                if isinstance(v, str) and v.startswith("sha256:"):
                    flat[k] = v
                else:
                    walk(v)
    walk(repos)
    return flat[tag]


# --- build -------------------------------------------------------------------------------------

def test_build_runs_every_step_and_the_image_runs(env, tmp_path, own_host_state):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "index.html").write_text("<h1>hello</h1>\n")
    (ctx / "ignored.log").write_text("no")
    (ctx / ".dockerignore").write_text("*.log\n")
    (ctx / "Dockerfile").write_text(
        "FROM busybox\n"
        "WORKDIR /app\n"
        "ADD index.html /app/\n"
        "RUN echo built-by-run > /app/built && ls /app\n"
        "EXPOSE 80\n"
        "ENV GREETING=hi\n"
        'CMD ["sh", "-c", "cat index.html built; echo $GREETING; pwd"]\n')
    r = env.cli("build", "-t", "web:1", str(ctx))
    assert r.returncode == 0, r.stderr
    steps = [ln for ln in r.stdout.splitlines() if ln.startswith("Step ")]
    assert steps[0] == "Step 1/7 : FROM busybox" and steps[-1].startswith("Step 7/7 : CMD")
    assert "index.html" in r.stdout                        # RUN output streamed
    assert "Successfully built " in r.stdout
    assert r.stdout.rstrip().endswith("Successfully tagged web:1")
    iid = _image_id(env, "web:1")
    cfg = env.image_config(iid)
    assert [bool(h.get("empty_layer")) for h in cfg["history"][-6:]] == \
        [True, False, False, True, True, True]
    assert cfg["config"]["ExposedPorts"] == {"80/tcp": {}}
    assert "GREETING=hi" in cfg["config"]["Env"] and cfg["config"]["WorkingDir"] == "/app"
    assert env.ok("run", "--rm", "--network", "none", "web:1").splitlines() == \
        ["<h1>hello</h1>", "built-by-run", "hi", "/app"]
    env.ok("run", "--rm", "--network", "none", "web:1", "sh", "-c", "test ! -e ignored.log")
    hist = env.cli("history", "web:1")
    if hist.returncode == 0:   # the history verb belongs to the images area
        assert len(hist.stdout.strip().splitlines()) - 1 == len(cfg["history"])
    builds = [e for e in env.events() if e["Type"] == "image" and e["Action"] == "build"]
    assert builds and builds[-1]["Actor"]["ID"] == iid


def _state(env: Env) -> tuple:
    layers = sorted(p.name for p in (env.paths.images / "layers").glob("*.tar"))
    configs = sorted(p.name for p in (env.paths.images / "configs" / "sha256").iterdir())
    tmp = sorted(p.name for p in env.paths.tmp.iterdir()) if env.paths.tmp.exists() else []
    return layers, configs, tmp, _containers(env)


def test_build_errors_name_the_line_and_leave_nothing(env, tmp_path, own_host_state):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "f").write_text("data")
    before = _state(env)
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN true\nBOGUS x\n")
    r = env.cli("build", "-t", "bad:1", str(ctx))
    assert r.returncode != 0
    assert "line 3" in r.stderr and "unknown instruction: BOGUS" in r.stderr
    assert _state(env) == before

    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY f /f\nRUN echo out; exit 3\n")
    r = env.cli("build", "-t", "bad:2", str(ctx))
    assert r.returncode != 0 and "returned a non-zero code: 3" in r.stderr
    assert "out" in r.stdout
    assert _state(env) == before   # the COPY layer was freed, no image, no container

    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY missing /x\n")
    r = env.cli("build", str(ctx))
    assert r.returncode != 0 and "missing" in r.stderr and "line 2" in r.stderr
    assert _state(env) == before


def test_build_multistage_args_chown_and_outside_dockerfile(env, tmp_path, own_host_state):
    ctx = tmp_path / "ctx"
    (ctx / "sub").mkdir(parents=True)
    (ctx / "sub" / "a.txt").write_text("A")
    with tarfile.open(ctx / "bundle.tar.gz", "w:gz") as t:
        t.add(ctx / "sub" / "a.txt", "inner/from-tar.txt")
    df = tmp_path / "elsewhere.Dockerfile"       # outside the context
    df.write_text(
        "ARG BASE=busybox\n"
        "FROM ${BASE} AS builder\n"
        "ARG WHO=nobody\n"
        "RUN mkdir /out && echo \"made by $WHO\" > /out/result\n"
        "FROM busybox\n"
        "COPY --from=builder /out/result /res/\n"
        "COPY --chown=nobody:nogroup sub/ /data/\n"
        "ADD bundle.tar.gz /unpacked/\n"
        "USER nobody\n")
    r = env.cli("build", "-f", str(df), "--build-arg", "WHO=tester", "--build-arg", "UNUSED=1",
                "-t", "multi", str(ctx))
    assert r.returncode == 0, r.stderr
    assert "[Warning] One or more build-args ['UNUSED'] were not consumed" in r.stdout
    out = env.ok("run", "--rm", "--network", "none", "multi", "sh", "-c",
                 "cat /res/result; stat -c '%u:%g %n' /data/a.txt; cat /unpacked/inner/from-tar.txt; echo;"
                 " id -u")
    assert out.splitlines() == ["made by tester", "65534:65534 /data/a.txt", "A", "65534"]
    # the builder stage's RUN layer is not part of the final image and was freed
    cfg = env.image_config(_image_id(env, "multi:latest"))
    layers = {p.name.removesuffix(".tar")
              for p in (env.paths.images / "layers").glob("*.tar")}
    assert {d.removeprefix("sha256:") for d in cfg["rootfs"]["diff_ids"]} <= layers
    assert not any("made by" in h.get("created_by", "") for h in cfg["history"])
    # --target stops at the named stage; --iidfile gets the id
    iidfile = tmp_path / "iid"
    env.ok("build", "-f", str(df), "--target", "builder", "--iidfile", str(iidfile),
           "-t", "multi-builder", str(ctx))
    assert iidfile.read_text() == _image_id(env, "multi-builder:latest")
    assert env.ok("run", "--rm", "--network", "none", "multi-builder", "cat",
                  "/out/result") == "made by nobody\n"
    r = env.cli("build", "-f", str(df), "--target", "nope", str(ctx))
    assert r.returncode != 0 and "target stage 'nope' could not be found" in r.stderr


def _procs_in_cgroup_of(ids: list[str]) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            text = Path(f"/proc/{pid}/cgroup").read_text()
        except OSError:
            continue
        if any(i in text for i in ids):
            found.append(int(pid))
    return found


def _force_cleanup(paths: Paths, ids: list[str]) -> None:
    """Teardown of last resort when the test failed: kill the snapshot's processes, unmount."""
    for pid in _procs_in_cgroup_of(ids):
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    for ln in Path("/proc/self/mountinfo").read_text().splitlines():
        mp = ln.split()[4]
        if mp.startswith(str(paths.root)):
            subprocess.run(["umount", "-l", mp], check=False)


def test_build_interrupted_by_daemon_crash_is_cleaned_up(busybox_tar, tmp_path):
    """kill -9 the daemon while a RUN step runs: the next build removes the snapshot (its
    process, mount and storage) and the work directories."""
    run = Path(tempfile.mkdtemp(prefix="aiorun-run-", dir="/tmp"))
    paths = Paths(root=tmp_path / "root", run=run)
    e = Env(paths, "overlay")
    d = start_daemon(paths, storage_driver="overlay")
    proc = None
    ids: list[str] = []
    try:
        ctx = tmp_path / "ctx"
        ctx.mkdir()
        shutil.copy(busybox_tar, ctx / "busybox.tar")
        (ctx / "Dockerfile").write_text('FROM scratch\nADD busybox.tar /\n'
                                        'RUN echo started; sleep 60\n')
        proc = subprocess.Popen([str(Path(os.sys.executable).with_name("aiorun")), "build",
                                 str(ctx)], stdout=subprocess.PIPE, text=True,
                                env=dict(os.environ, AIORUN_ROOT=str(paths.root),
                                         AIORUN_RUN=str(run)))
        for line in proc.stdout:
            if line.startswith("started"):
                break
        storage = paths.root / "storage" / "overlay"
        mounted = lambda: [ln for ln in Path("/proc/self/mountinfo").read_text().splitlines()
                           if str(storage) in ln]
        assert mounted()                     # the RUN snapshot is mounted
        ids = [i for f in paths.tmp.glob("build-*/snapshots") for i in f.read_text().split()]
        assert ids and _procs_in_cgroup_of(ids)
        d.kill9()
        proc.wait(10)
        d = start_daemon(paths, storage_driver="overlay")
        (ctx / "Dockerfile").write_text("FROM scratch\nADD busybox.tar /\n")
        e.ok("build", "-q", str(ctx))
        assert not mounted()
        assert [p.name for p in paths.tmp.iterdir() if p.name.startswith("build")] == []
        assert not list((storage / "containers").iterdir())
        deadline = time.monotonic() + 5
        while _procs_in_cgroup_of(ids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _procs_in_cgroup_of(ids)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        _force_cleanup(paths, ids)
        d.stop_all()
        subprocess.run(["rm", "-rf", "--one-file-system", str(run)], check=False)


def test_build_cache(env, tmp_path, own_host_state):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "f").write_text("one")
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY f /f\nRUN echo $(cat /f) > /g; date > /n\n"
                                    "CMD [\"cat\", \"/g\", \"/n\"]\n")
    first = env.ok("build", "-t", "cached:1", str(ctx))
    assert "Using cache" not in first
    second = env.ok("build", "-t", "cached:2", str(ctx))
    assert second.count("Using cache") == 2
    cfg1, cfg2 = (env.image_config(_image_id(env, f"cached:{n}")) for n in (1, 2))
    assert cfg1["rootfs"]["diff_ids"] == cfg2["rootfs"]["diff_ids"]
    (ctx / "f").write_text("two")                      # the COPY source changed: no cache
    third = env.ok("build", "-t", "cached:3", str(ctx))
    assert "Using cache" not in third
    assert env.ok("run", "--rm", "--network", "none", "cached:3").splitlines()[0] == "two"
    fourth = env.ok("build", "--no-cache", "-t", "cached:4", str(ctx))
    assert "Using cache" not in fourth


def test_build_onbuild_triggers(env, tmp_path, own_host_state):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "f").write_text("from-child-context\n")
    (ctx / "Dockerfile").write_text("FROM busybox\nONBUILD COPY f /onbuild-f\n"
                                    "ONBUILD RUN echo trig > /t\n")
    env.ok("build", "-q", "-t", "parent-ob", str(ctx))
    (ctx / "Dockerfile").write_text("FROM parent-ob\nCMD [\"cat\", \"/onbuild-f\", \"/t\"]\n")
    out = env.ok("build", "-t", "child-ob", str(ctx))
    assert "# Executing 2 build triggers" in out
    assert env.ok("run", "--rm", "--network", "none", "child-ob").split() == \
        ["from-child-context", "trig"]
    assert not env.image_config(_image_id(env, "child-ob:latest"))["config"].get("OnBuild")


def test_docker_clients_drive_build_commit_and_volumes(env, tmp_path, own_host_state):
    """The docker CLI (classic builder) and docker-py against aiorun's socket."""
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker CLI on PATH")
    denv = dict(os.environ, DOCKER_HOST=f"unix://{env.paths.socket}", DOCKER_BUILDKIT="0",
                DOCKER_CONFIG=str(tmp_path / "dockercfg"))

    def dk(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([docker, *args], env=denv, capture_output=True, text=True,
                              timeout=60)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text('FROM busybox\nRUN echo hi > /x\nCMD ["cat", "/x"]\n')
    r = dk("build", "-t", "dk-built:1", str(ctx))
    assert r.returncode == 0, r.stderr
    assert "Successfully tagged dk-built:1" in r.stdout
    assert env.ok("run", "--rm", "--network", "none", "dk-built:1") == "hi\n"
    r = dk("build", "-t", "dk-bad", "-f", "-", str(ctx))     # empty Dockerfile on stdin
    assert r.returncode != 0
    vol = f"dkv{secrets.token_hex(3)}"
    assert dk("volume", "create", vol).stdout.strip() == vol
    assert vol in dk("volume", "ls", "-q").stdout.split()
    assert dk("volume", "rm", vol).returncode == 0
    name = f"dk{secrets.token_hex(4)}"
    env.ok("create", "--network", "none", "--name", name, "busybox", "true")
    try:
        r = dk("commit", "-c", 'CMD ["echo", "from-docker-commit"]', name, "dk-committed:1")
        assert r.returncode == 0 and r.stdout.startswith("sha256:"), r.stderr
    finally:
        env.cli("rm", "-f", name)
    assert env.ok("run", "--rm", "--network", "none", "dk-committed:1") == "from-docker-commit\n"

    import docker as dockerpy
    client = dockerpy.DockerClient(base_url=f"unix://{env.paths.socket}")
    try:
        img, logs = client.images.build(path=str(ctx), tag="py-built:1")
        assert img.id.startswith("sha256:") and "py-built:1" in img.tags
        with pytest.raises(dockerpy.errors.BuildError):
            (ctx / "Dockerfile").write_text("FROM busybox\nRUN exit 7\n")
            client.images.build(path=str(ctx), tag="py-bad:1")
    finally:
        client.close()


def test_build_cancelled_by_client_cleans_up(env, tmp_path, own_host_state):
    """The client goes away during a RUN: the step's process is killed, its snapshot removed."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo started; sleep 60\n")
    proc = subprocess.Popen([str(Path(os.sys.executable).with_name("aiorun")), "build",
                             str(ctx)], stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, AIORUN_ROOT=str(env.paths.root),
                                     AIORUN_RUN=str(env.paths.run)))
    ids: list[str] = []
    try:
        for line in proc.stdout:
            if line.startswith("started"):
                break
        ids = [i for f in env.paths.tmp.glob("build-*/snapshots") for i in f.read_text().split()]
        assert ids and _procs_in_cgroup_of(ids)
        proc.kill()
        proc.wait(10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (
                _procs_in_cgroup_of(ids) or list(env.paths.tmp.glob("build*"))):
            time.sleep(0.05)
        assert not _procs_in_cgroup_of(ids)
        assert not list(env.paths.tmp.glob("build*"))
        storage = env.paths.root / "storage" / env.driver / "containers"
        assert not [p for p in storage.iterdir() if p.name in ids] if storage.exists() else True
    finally:
        if proc.poll() is None:
            proc.kill()
        if _procs_in_cgroup_of(ids):
            _force_cleanup(env.paths, ids)

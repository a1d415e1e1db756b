"""docker cp / diff / export / stats against a real ``aiorun serve``, driven by the docker CLI
v28, docker-py and aiorun's own CLI (issue 14, "missing verbs and endpoints")."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

from aiorun.config import Paths
from aiorun.testing.daemon import DaemonProcess, run_cli, start_daemon
from netns_util import owned_state, remove_all_and_stop

DOCKER = "/usr/local/bin/docker"
pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not os.path.exists(DOCKER), reason="no docker CLI v28")]


class Env:
    def __init__(self, d: DaemonProcess, paths: Paths, work: Path) -> None:
        self.d, self.paths, self.work = d, paths, work

    def dk(self, *args: str, ok: bool = True, input: bytes | None = None,
           timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
        r = subprocess.run([DOCKER, "-H", f"unix://{self.paths.socket}", *args],
                           capture_output=True, input=input, timeout=timeout)
        if ok:
            assert r.returncode == 0, f"docker {' '.join(args)}: {r.stderr.decode()}"
        return r

    def out(self, *args: str) -> str:
        return self.dk(*args).stdout.decode()

    def cli(self, *args: str, ok: bool = True, input: bytes | None = None
            ) -> subprocess.CompletedProcess[str]:
        r = run_cli(self.paths, *args, input=input)
        if ok:
            assert r.returncode == 0, f"aiorun {' '.join(args)}: {r.stderr}"
        return r


@pytest.fixture(scope="module", params=["asyncio", "trio"])
def env(request: pytest.FixtureRequest, busybox_tar: Path) -> Iterator[Env]:
    """One daemon per backend: the tar streams are async generators closed at any point
    (a client hanging up), which trio is strict about."""
    root = Path(tempfile.mkdtemp(prefix="aiorun-cpst-"))
    run = Path(tempfile.mkdtemp(prefix="aiorun-run-", dir="/tmp"))
    paths = Paths(root / "root", run)
    before = owned_state(paths)
    d = start_daemon(paths, backend=request.param)
    e = Env(d, paths, root / "work")
    e.work.mkdir()
    try:
        assert run_cli(paths, "import", str(busybox_tar), "busybox").returncode == 0
        yield e
    finally:
        left = remove_all_and_stop(d, paths, before, root, run)
    assert not left, f"left behind: {sorted(left)}"


def _stat_header(env: Env, cid: str, path: str) -> tuple[int, dict]:
    c = env.d.client()
    r = c.request("HEAD", f"/containers/{cid}/archive", {"path": path}, check=False)
    try:
        hdr = r.headers.get("x-docker-container-path-stat")
        return r.status, json.loads(base64.b64decode(hdr)) if hdr else {}
    finally:
        r.close()


def test_cp_files_dirs_symlinks_both_ways(env: Env):
    env.dk("run", "-d", "--name", "cp1", "busybox", "sh", "-c",
           "mkdir -p /data/sub && echo hello > /data/sub/f && ln -s /data/sub /data/lnk && "
           "sleep 600")
    time.sleep(0.5)
    w = env.work
    # container -> host: a directory, with its symlinks kept as links
    env.dk("cp", "cp1:/data", str(w / "out"))
    assert (w / "out/sub/f").read_text() == "hello\n"
    assert os.readlink(w / "out/lnk") == "/data/sub"
    # a symlink as it is, and followed (-L)
    env.dk("cp", "cp1:/data/lnk", str(w / "lnk-copy"))
    assert os.path.islink(w / "lnk-copy")
    env.dk("cp", "-L", "cp1:/data/lnk", str(w / "lnk-followed"))
    assert (w / "lnk-followed/f").read_text() == "hello\n"
    # contents of a directory (dir/.)
    env.dk("cp", "cp1:/data/sub/.", str(w / "contents"))
    assert (w / "contents/f").read_text() == "hello\n"
    # host -> container: a file, a directory, into a symlinked directory
    (w / "up.txt").write_text("up\n")
    (w / "updir/inner").mkdir(parents=True)
    (w / "updir/inner/x").write_text("x\n")
    os.symlink("inner/x", w / "updir/rel")
    env.dk("cp", str(w / "up.txt"), "cp1:/data/up.txt")
    env.dk("cp", str(w / "updir"), "cp1:/data/")
    env.dk("cp", str(w / "up.txt"), "cp1:/data/lnk/")
    assert env.out("exec", "cp1", "cat", "/data/up.txt", "/data/updir/inner/x",
                   "/data/sub/up.txt") == "up\nx\nup\n"
    assert env.out("exec", "cp1", "readlink", "/data/updir/rel").strip() == "inner/x"
    # a bind-mounted file (/etc/hosts) is written through, as in the container
    (w / "myhosts").write_text("127.0.0.1 localhost\n10.9.9.9 custom-host\n")
    env.dk("cp", str(w / "myhosts"), "cp1:/etc/hosts")
    assert "custom-host" in env.out("exec", "cp1", "cat", "/etc/hosts")
    # stdin / stdout as a tar stream ("-")
    tar = env.dk("cp", "cp1:/data/sub/f", "-").stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        assert t.getnames() == ["f"] and t.extractfile("f").read() == b"hello\n"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        ti = tarfile.TarInfo("fromstdin")
        ti.size = 3
        t.addfile(ti, io.BytesIO(b"in\n"))
    env.dk("cp", "-", "cp1:/tmp", input=buf.getvalue())
    assert env.out("exec", "cp1", "cat", "/tmp/fromstdin") == "in\n"
    # the stat header: Go file modes, link targets resolved inside the container
    status, st = _stat_header(env, "cp1", "/data/lnk")
    assert status == 200 and st["name"] == "lnk" and st["linkTarget"] == "/data/sub"
    assert st["mode"] & (1 << 27)          # os.ModeSymlink
    status, st = _stat_header(env, "cp1", "/data/sub")
    assert st["mode"] & (1 << 31) and st["mode"] & 0o777 == 0o755   # os.ModeDir
    assert _stat_header(env, "cp1", "/nope")[0] == 404


def test_cp_hostile_symlink_stays_inside(env: Env):
    """A link to / (or climbing with ..) in the container leads to the container's root, in
    both directions; nothing on the host is read or written."""
    marker = Path(tempfile.mkdtemp(prefix="aiorun-cpst-host-"))
    try:
        (marker / "secret").write_text("host secret\n")
        env.dk("run", "-d", "--name", "cp2", "busybox", "sh", "-c",
               f"ln -s / /rootlink && ln -s ../../../../..{marker} /climb && sleep 600")
        time.sleep(0.5)
        # read: the container has no such file; the host's is never reached
        r = env.dk("cp", "cp2:/climb/secret", str(env.work / "stolen"), ok=False)
        assert r.returncode != 0 and not (env.work / "stolen").exists()
        assert b"Could not find the file" in r.stderr
        # write through the links: lands in the container
        (env.work / "evil").write_text("evil\n")
        env.dk("cp", str(env.work / "evil"), "cp2:/rootlink/tmp/")
        env.dk("exec", "cp2", "mkdir", "-p", str(marker))
        env.dk("cp", str(env.work / "evil"), "cp2:/climb/")
        assert not (marker / "evil").exists() and not Path("/tmp/evil").exists()
        env.dk("cp", str(env.work / "evil"), "cp2:/../../../../tmp/outside-aiorcp")
        assert not Path("/tmp/outside-aiorcp").exists()
        assert env.out("exec", "cp2", "cat", "/tmp/outside-aiorcp") == "evil\n"
        assert env.out("exec", "cp2", "cat", "/tmp/evil", f"{marker}/evil") == "evil\nevil\n"
        # a tar whose entries climb out is refused
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as t:
            ti = tarfile.TarInfo("../../../../escape")
            ti.size = 1
            t.addfile(ti, io.BytesIO(b"x"))
        c = env.d.client()
        resp = c.request("PUT", "/containers/cp2/archive", {"path": "/tmp"},
                         body=buf.getvalue(), headers={"Content-Type": "application/x-tar"},
                         check=False)
        assert resp.status == 400 and b"outside" in resp.read()
        resp.close()
        # a destination that is not a directory, a missing one
        r = env.dk("cp", str(env.work / "evil"), "cp2:/nonexistent/dir/", ok=False)
        assert r.returncode != 0
    finally:
        shutil.rmtree(marker)


def test_cp_stopped_container_and_volume(env: Env):
    vol = env.work / "bindsrc"
    vol.mkdir()
    (vol / "in-volume").write_text("vol\n")
    env.dk("create", "--name", "cp3", "-v", f"{vol}:/mnt/b", "busybox", "cat",
           "/etc/written", "/mnt/b/from-cp")
    env.dk("start", "-a", "cp3", ok=False)       # mounts recorded at the first start
    (env.work / "written").write_text("written while stopped\n")
    env.dk("cp", str(env.work / "written"), "cp3:/etc/written")
    env.dk("cp", str(env.work / "written"), "cp3:/mnt/b/from-cp")
    assert (vol / "from-cp").read_text() == "written while stopped\n"     # the volume
    env.dk("cp", "cp3:/mnt/b/in-volume", str(env.work / "got-vol"))
    assert (env.work / "got-vol").read_text() == "vol\n"
    assert env.out("start", "-a", "cp3") == "written while stopped\n" * 2
    # a container never started: cp in, then start it (the docker create; cp; start idiom)
    env.dk("create", "--name", "cp6", "busybox", "cat", "/conf/app.cfg")
    (env.work / "app.cfg").write_text("cfg\n")
    r = env.dk("cp", str(env.work / "app.cfg"), "cp6:/conf/app.cfg", ok=False)
    assert r.returncode != 0                         # /conf does not exist: as docker
    env.dk("cp", str(env.work / "app.cfg"), "cp6:/app.cfg")
    env.dk("cp", str(env.work / "app.cfg"), "cp6:/etc/")
    assert env.out("diff", "cp6") == "A /app.cfg\nC /etc\nA /etc/app.cfg\n"
    # a client hanging up mid-stream releases the stopped container (its lock, its mount)
    for what in ("archive", "export"):
        r = env.d.client().request("GET", f"/containers/cp6/{what}", {"path": "/"})
        assert next(r.iter_chunks())
        r.close()
    time.sleep(0.3)
    env.dk("start", "cp6")
    assert env.out("wait", "cp6").strip() == "1"       # ran: cat of a missing file
    assert "Traceback" not in env.d.log()
    # the docker 20.10 CLI speaks the same API
    if os.path.exists("/usr/bin/docker"):
        r = subprocess.run(["/usr/bin/docker", "-H", f"unix://{env.paths.socket}", "cp",
                            "cp6:/app.cfg", str(env.work / "old-cli.cfg")], capture_output=True)
        assert r.returncode == 0, r.stderr
        assert (env.work / "old-cli.cfg").read_text() == "cfg\n"
    # read-only volume: refused with Docker's words
    env.dk("create", "--name", "cp4", "-v", f"{vol}:/ro:ro", "--read-only", "busybox", "true")
    env.dk("start", "-a", "cp4")
    r = env.dk("cp", str(env.work / "written"), "cp4:/ro/", ok=False)
    assert b"marked read-only" in r.stderr
    r = env.dk("cp", str(env.work / "written"), "cp4:/tmp/", ok=False)
    assert b"rootfs is marked read-only" in r.stderr



def test_cp_owner_and_dir_nondir(env: Env):
    """-a gives the container user's uid/gid (copyUIDGID), without it the owners stay root;
    a file never replaces a directory (noOverwriteDirNonDir, which the CLI always sets)."""
    env.dk("run", "-d", "--name", "cp7", "--user", "1234:4321", "busybox", "sh", "-c",
           "mkdir -p /tmp/isdir && sleep 600")
    time.sleep(0.3)
    f = env.work / "owned.txt"
    f.write_text("o\n")
    env.dk("cp", "-a", str(f), "cp7:/tmp/a.txt")
    env.dk("cp", str(f), "cp7:/tmp/b.txt")
    assert env.out("exec", "cp7", "stat", "-c", "%u:%g", "/tmp/a.txt", "/tmp/b.txt") == \
        "1234:4321\n0:0\n"
    (env.work / "isdir").write_text("file\n")
    r = env.dk("cp", str(env.work / "isdir"), "cp7:/tmp/", ok=False)
    assert r.returncode != 0 and b"cannot overwrite directory" in r.stderr
    assert env.out("exec", "cp7", "sh", "-c", "test -d /tmp/isdir && echo dir") == "dir\n"
    env.dk("rm", "-f", "cp7")

def test_docker_py_archive(env: Env):
    import docker
    client = docker.DockerClient(base_url=f"unix://{env.paths.socket}")
    try:
        c = client.containers.run("busybox", ["sleep", "600"], name="cp5", detach=True)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as t:
            ti = tarfile.TarInfo("py/owned")
            ti.size, ti.uid, ti.gid = 2, 1234, 4321
            t.addfile(ti, io.BytesIO(b"p\n"))
        assert c.put_archive("/tmp", buf.getvalue())
        assert c.exec_run(["stat", "-c", "%u:%g", "/tmp/py/owned"]).output == b"1234:4321\n"
        bits, st = c.get_archive("/tmp/py")
        with tarfile.open(fileobj=io.BytesIO(b"".join(bits))) as t:
            assert sorted(t.getnames()) == ["py", "py/owned"]
        assert st["name"] == "py" and st["mode"] & (1 << 31)
        c.remove(force=True)
    finally:
        client.close()


def test_diff_and_export(env: Env):
    env.dk("run", "--name", "df1", "busybox", "sh", "-c",
           "echo new > /tmp/added && rm /bin/ls && echo changed >> /etc/passwd")
    lines = env.out("diff", "df1").splitlines()
    assert "A /tmp/added" in lines and "D /bin/ls" in lines and "C /etc/passwd" in lines
    assert "C /tmp" in lines and "C /etc" in lines and "C /bin" in lines
    assert not [ln for ln in lines if "hosts" in ln or "resolv.conf" in ln]
    import docker
    client = docker.DockerClient(base_url=f"unix://{env.paths.socket}")
    try:
        got = client.containers.get("df1").diff()
        assert {"Path": "/tmp/added", "Kind": 1} in got and {"Path": "/bin/ls", "Kind": 2} in got
    finally:
        client.close()
    out = env.work / "df1.tar"
    env.dk("export", "-o", str(out), "df1")
    with tarfile.open(out) as t:
        names = set(t.getnames())
        assert "tmp/added" in names and "bin/ls" not in names and "bin/sh" in names
        assert t.extractfile("tmp/added").read() == b"new\n"
    # the export imports back as an image that runs
    env.dk("import", str(out), "df1img")
    assert env.out("run", "--rm", "df1img", "cat", "/tmp/added") == "new\n"
    assert env.dk("diff", "nosuch", ok=False).returncode != 0


def _burn(env: Env, name: str) -> None:
    env.dk("run", "-d", "--name", name, "busybox", "sh", "-c",
           "while :; do :; done & sleep 600")


def test_stats_real_numbers(env: Env):
    _burn(env, "st1")
    time.sleep(1.5)
    fmt = "{{.Name}}|{{.CPUPerc}}|{{.MemUsage}}|{{.PIDs}}|{{.NetIO}}"
    row = env.out("stats", "--no-stream", "--format", fmt, "st1").strip()
    name, cpu, mem, pids, net = row.split("|")
    assert name == "st1"
    assert float(cpu.rstrip("%")) > 10.0, row       # one busy loop on a shared host
    assert not mem.startswith("0B"), row
    assert int(pids) >= 2, row                      # sh, the loop, sleep
    assert "/" in net, row
    assert "st1" in env.out("stats", "--no-stream", "--format", "{{.Name}}").split()
    # the CLI's streamed table (stream=1): rows with real numbers, once a second
    try:
        subprocess.run([DOCKER, "-H", f"unix://{env.paths.socket}", "stats", "--format",
                        "{{.Name}} {{.CPUPerc}}", "st1"], capture_output=True, timeout=4)
        raise AssertionError("docker stats (streamed) ended by itself")
    except subprocess.TimeoutExpired as exc:
        shown = (exc.stdout or b"").decode()
    cpus = [float(x.rstrip("%")) for x in shown.split() if x.endswith("%")]
    assert "st1" in shown and cpus and max(cpus) > 10.0, shown
    # the JSON: docker-py, one-shot and streamed
    import docker
    client = docker.DockerClient(base_url=f"unix://{env.paths.socket}")
    try:
        c = client.containers.get("st1")
        s = c.stats(stream=False)
        assert s["cpu_stats"]["cpu_usage"]["total_usage"] > \
            s["precpu_stats"]["cpu_usage"]["total_usage"] > 0
        assert s["cpu_stats"]["system_cpu_usage"] > 0 and s["cpu_stats"]["online_cpus"] >= 1
        assert s["memory_stats"]["usage"] > 0 and s["memory_stats"]["limit"] > 0
        assert s["memory_stats"]["stats"] and s["pids_stats"]["current"] >= 2
        assert set(s["networks"]["eth0"]) >= {"rx_bytes", "tx_bytes", "rx_packets",
                                              "tx_dropped"}
        one = c.stats(stream=False, one_shot=True)
        assert one["precpu_stats"]["cpu_usage"]["total_usage"] == 0
        gen = c.stats(stream=True, decode=True)
        a, b = next(gen), next(gen)
        assert b["precpu_stats"] == a["cpu_stats"]
        gen.close()
        # stopped: Docker's zero document; the CLI shows zeros
        c.stop(timeout=0)
        z = c.stats(stream=False)
        assert z["read"].startswith("0001-01-01") and z["id"] == c.id
        gen = c.stats(stream=True, decode=True)             # streamed: zero documents
        assert next(gen)["read"].startswith("0001-01-01")
        gen.close()
    finally:
        client.close()
    row = env.out("stats", "--no-stream", "--format", "{{.CPUPerc}} {{.PIDs}}", "st1").split()
    assert row == ["0.00%", "0"]
    assert "st1" not in env.out("stats", "--no-stream", "--format", "{{.Name}}").split()
    assert "st1" in env.out("stats", "-a", "--no-stream", "--format", "{{.Name}}").split()
    assert env.dk("stats", "--no-stream", "nosuch", ok=False).returncode != 0



def test_aiorun_cli_verbs(env: Env):
    """aiorun's own cp / diff / export / stats / completion against the same daemon."""
    env.cli("run", "-d", "--name", "ac1", "busybox", "sh", "-c",
            "mkdir -p /srv/d && echo one > /srv/d/f && ln -s /srv/d /srv/l && "
            "while :; do :; done & sleep 600")
    time.sleep(0.5)
    w = env.work / "cli"
    w.mkdir()
    env.cli("cp", "ac1:/srv/d", str(w / "d"))
    assert (w / "d/f").read_text() == "one\n"
    env.cli("cp", "ac1:/", str(w / "root"))                # the whole (merged) rootfs
    assert (w / "root/bin/busybox").is_file() and (w / "root/srv/d/f").is_file()
    env.cli("cp", "ac1:/srv/d/.", str(w))                  # contents into an existing dir
    assert (w / "f").read_text() == "one\n"
    env.cli("cp", "ac1:/srv/l", str(w / "l"))
    assert os.readlink(w / "l") == "/srv/d"
    env.cli("cp", "-L", "ac1:/srv/l", str(w / "lf"))
    assert (w / "lf/f").read_text() == "one\n"
    (w / "up").mkdir()
    (w / "up/a").write_text("a\n")
    env.cli("cp", str(w / "up"), "ac1:/srv/")
    env.cli("cp", str(w / "up/a"), "ac1:/srv/renamed")
    env.cli("cp", str(w / "up/a"), "ac1:/srv/l/")           # into the dir the link names
    assert env.cli("exec", "ac1", "cat", "/srv/up/a", "/srv/renamed",
                   "/srv/d/a").stdout == "a\na\na\n"
    r = env.cli("cp", str(w / "up"), "ac1:/srv/renamed", ok=False)
    assert r.returncode != 0 and "cannot copy a directory to a file" in r.stderr
    r = env.cli("cp", "ac1:/nope", str(w / "x"), ok=False)
    assert r.returncode != 0 and "Could not find the file /nope" in r.stderr
    tar = subprocess.run([str(Path(os.sys.executable).with_name("aiorun")), "cp",
                          "ac1:/srv/d/f", "-"], capture_output=True,
                         env={**os.environ, "AIORUN_ROOT": str(env.paths.root),
                              "AIORUN_RUN": str(env.paths.run)}).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        assert t.getnames() == ["f"]
    lines = env.cli("diff", "ac1").stdout.splitlines()
    assert "A /srv/up/a" in lines and "C /srv" not in lines and "A /srv" in lines
    env.cli("export", "-o", str(w / "ac1.tar"), "ac1")
    with tarfile.open(w / "ac1.tar") as t:
        assert "srv/d/f" in t.getnames()
    out = env.cli("stats", "--no-stream", "ac1").stdout.splitlines()
    assert out[0].split()[:3] == ["CONTAINER", "ID", "NAME"]
    cpu = float(out[1].split()[2].rstrip("%"))
    assert cpu > 10.0, out
    row = env.cli("stats", "--no-stream", "--format", "{{.Name}}:{{.PIDs}}", "ac1").stdout
    assert row.startswith("ac1:") and int(row.strip().split(":")[1]) >= 2
    # streamed: a table a second until interrupted (a terminal gets it redrawn in place)
    try:
        subprocess.run([str(Path(os.sys.executable).with_name("aiorun")), "stats", "ac1"],
                       capture_output=True, timeout=3.5,
                       env={**os.environ, "AIORUN_ROOT": str(env.paths.root),
                            "AIORUN_RUN": str(env.paths.run)})
        raise AssertionError("aiorun stats (streamed) ended by itself")
    except subprocess.TimeoutExpired as exc:
        shown = (exc.stdout or b"").decode()
    assert shown.count("CONTAINER ID") >= 2 and "\033[2J" not in shown, shown
    env.cli("rm", "-f", "ac1")
    comp = subprocess.run(["bash", "-c", "source <(\"$0\" completion bash); "
                           "COMP_WORDS=(aiorun st); COMP_CWORD=1; _aiorun; "
                           "echo \"${COMPREPLY[*]}\"",
                           str(Path(os.sys.executable).with_name("aiorun"))],
                          capture_output=True, text=True)
    assert {"start", "stats", "stop"} <= set(comp.stdout.split()), comp
    assert env.cli("--version").stdout.startswith("aiorun version ")


def test_legacy_links(env: Env):
    env.dk("run", "-d", "--name", "lk-db", "-e", "SECRET=s3", "--expose", "5432",
           "busybox", "sleep", "600")
    ip = env.out("inspect", "-f", "{{.NetworkSettings.IPAddress}}", "lk-db").strip()
    short = env.out("inspect", "-f", "{{.Id}}", "lk-db").strip()[:12]
    out = env.out("run", "--name", "lk-web", "--link", "lk-db:database", "-e",
                  "DATABASE_ENV_SECRET=mine", "busybox", "sh", "-c", "env; cat /etc/hosts")
    lines = out.splitlines()
    assert f"DATABASE_PORT=tcp://{ip}:5432" in lines
    assert f"DATABASE_PORT_5432_TCP_ADDR={ip}" in lines
    assert "DATABASE_PORT_5432_TCP_PORT=5432" in lines and "DATABASE_NAME=/lk-web/database" in lines
    assert "DATABASE_ENV_SECRET=mine" in lines          # the container's own Env wins
    assert not [ln for ln in lines if ln.startswith("DATABASE_ENV_PATH=")]
    assert f"{ip}\tdatabase {short} lk-db" in lines
    assert env.out("inspect", "-f", "{{json .HostConfig.Links}}", "lk-web").strip() == \
        '["/lk-db:/lk-web/database"]'
    r = env.dk("rm", "--link", "lk-web", ok=False)        # a name, not a link: kept
    assert b"cannot remove the default link name" in r.stderr
    env.dk("rm", "--link", "/lk-web/database")
    assert env.out("inspect", "-f", "{{json .HostConfig.Links}}", "lk-web").strip() == "null"
    env.dk("rm", "lk-web")
    # the linked container must exist at create and run at start
    r = env.dk("create", "--link", "nosuch:x", "busybox", "true", ok=False)
    assert b"could not get container for nosuch" in r.stderr
    # aiorun's own run --link
    out = env.cli("run", "--rm", "--link", "lk-db:db2", "busybox", "sh", "-c",
                  "echo $DB2_ENV_SECRET; grep -c db2 /etc/hosts").stdout
    assert out == "s3\n1\n"
    env.dk("stop", "-t", "0", "lk-db")
    r = env.dk("run", "--rm", "--link", "lk-db", "busybox", "true", ok=False)
    assert b"Cannot link to a non running container: /lk-db AS" in r.stderr
    r = env.dk("create", "--network", "none", "--link", "lk-db", "busybox", "true", ok=False)
    assert b"only supported on the default bridge network" in r.stderr
    env.dk("rm", "lk-db")

def test_image_prune_filters_and_system_prune(env: Env, busybox_tar: Path):
    """``image prune -a --filter until=1h`` keeps an image made just now (it used to delete
    every unused image); labels select; ``system prune`` reaches /build/prune."""
    keeper = env.out("create", "busybox", "true").strip()      # busybox stays in use
    env.cli("import", str(busybox_tar), "young:1")
    env.dk("tag", "young:1", "young:labelled")
    out = env.out("image", "prune", "-a", "-f", "--filter", "until=1h")
    assert "young" not in out
    assert "young:1" in env.out("images", "--format", "{{.Repository}}:{{.Tag}}")
    # an image whose Created is before the cut is removed
    env.out("image", "prune", "-a", "-f", "--filter", "until=-1m")   # a minute in the future
    assert "young" not in env.out("images", "--format", "{{.Repository}}")
    assert "busybox" in env.out("images", "--format", "{{.Repository}}")  # used: kept
    r = env.dk("image", "prune", "-f", "--filter", "bogus=1", ok=False)
    assert b"invalid filter 'bogus'" in r.stderr
    # label: only images that carry it
    cid = env.out("create", "--label", "x=y", "busybox", "true").strip()
    env.dk("commit", "-c", "LABEL keep=no", cid, "lab:1")
    env.dk("commit", cid, "nolab:1")
    env.dk("rm", cid)
    env.out("image", "prune", "-a", "-f", "--filter", "label=keep=no")
    names = env.out("images", "--format", "{{.Repository}}")
    assert "lab" not in names.split() and "nolab" in names.split()
    env.dk("rmi", "nolab:1")
    env.dk("rm", keeper)
    env.dk("network", "create", "--subnet", "10.252.77.0/24", "aiorcp-net")
    out = env.out("system", "prune", "-f", "--filter", "until=1h")   # young: all kept
    assert "aiorcp-net" in env.out("network", "ls", "--format", "{{.Name}}")
    out = env.out("system", "prune", "-f")
    assert "Total reclaimed space" in out
    assert "aiorcp-net" not in env.out("network", "ls", "--format", "{{.Name}}")
    env.dk("create", "--name", "pr-left", "busybox", "true")
    out = env.cli("system", "prune", "-f", "--filter", "until=1h").stdout   # aiorun's own
    assert "Total reclaimed space" in out
    assert "pr-left" in env.out("ps", "-a", "--format", "{{.Names}}")
    env.cli("import", str(busybox_tar), "prunable:1")        # unused: -a removes it
    out = env.cli("system", "prune", "-f", "-a").stdout
    assert "Deleted Containers:" in out and "Deleted Images:" in out
    assert "pr-left" not in env.out("ps", "-a", "--format", "{{.Names}}")
    r = env.dk("builder", "prune", "-f", "--filter", "label=a", ok=False)
    assert b"invalid filter 'label'" in r.stderr

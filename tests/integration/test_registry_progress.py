"""Progress of long work in aiorun's own CLI, through the real daemon: ``pull``, ``push``,
``import``, ``load``, ``save`` and ``build``'s context upload draw per-item bars on a terminal
(a pseudo-terminal here) and print plain lines otherwise. import/load/save/build report on
stderr (stdout keeps their results: an id, "Loaded image: …", the tar)."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import threading

import pytest

from aiorun.testing.daemon import _env, aiorun_executable, run_cli
from aiorun.testing.registry import start_registry

pytestmark = pytest.mark.integration

ESC = "\x1b["


def on_terminal(paths, *args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    """Run the CLI with stdout and stderr on a pseudo-terminal (merged there, as a user sees
    them); (exit status, terminal output, "")."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([aiorun_executable(), *args], stdin=subprocess.PIPE,
                            stdout=slave, stderr=slave, env=_env(paths, None))
    os.close(slave)
    assert proc.stdin is not None

    def feed() -> None:          # in a thread: the terminal is read meanwhile
        assert proc.stdin is not None
        if stdin is not None:
            proc.stdin.write(stdin)
        proc.stdin.close()
    feeder = threading.Thread(target=feed)
    feeder.start()
    chunks: list[bytes] = []
    while True:
        ready, _, _ = select.select([master], [], [], 120)
        assert ready, "the CLI printed nothing for 120 s"
        try:
            data = os.read(master, 65536)
        except OSError:            # EIO: the CLI exited and closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    feeder.join(60)
    return proc.wait(60), b"".join(chunks).decode(errors="replace").replace("\r\n", "\n"), ""


def test_import_load_save_build_progress(daemon, aiorun_paths, busybox_tar, tmp_path):
    paths = aiorun_paths
    size = busybox_tar.stat().st_size

    # import: a bar for the file on a terminal, rewritten in place; then the id
    code, tty, _ = on_terminal(paths, "import", str(busybox_tar), "prog:1")
    assert code == 0, tty
    assert "busybox.tar: Uploading [" in tty and ESC in tty, tty
    assert re.search(r"busybox\.tar: Uploaded [\d.]+MB", tty), tty
    assert re.search(r"\rsha256:[0-9a-f]{64}\n", tty), tty
    # not a terminal: one plain line per status on stderr; stdout is the id alone
    r = run_cli(paths, "import", str(busybox_tar), "prog:2")
    assert r.returncode == 0, r.stderr
    assert re.fullmatch(r"sha256:[0-9a-f]{64}\n", r.stdout), r.stdout
    assert re.fullmatch(r"busybox\.tar: Uploading\nbusybox\.tar: Uploaded [\d.]+MB\n",
                        r.stderr), r.stderr

    # save: bytes received (the total is not known in advance)
    out = tmp_path / "saved.tar"
    code, tty, _ = on_terminal(paths, "save", "-o", str(out), "prog:1")
    assert code == 0, tty
    assert "saved.tar: Saving" in tty and ESC in tty, tty
    assert re.search(r"saved\.tar: Saved [\d.]+MB", tty), tty
    assert out.stat().st_size > size
    r = run_cli(paths, "save", "prog:1", text=False)
    assert r.returncode == 0 and r.stdout[:512].count(b"\0") > 0     # the tar on stdout
    assert re.fullmatch(rb"stdout: Saving\nstdout: Saved [\d.]+MB\n", r.stderr), r.stderr

    # load: from a file and from stdin; -q shows nothing
    layer = json.loads(run_cli(paths, "image", "inspect", "prog:1").stdout)[0]["RootFS"][
        "Layers"][0].removeprefix("sha256:")[:12]
    code, tty, _ = on_terminal(paths, "load", "-i", str(out))
    assert code == 0 and "saved.tar: Uploading [" in tty and "Loaded image: prog:1" in tty, tty
    # then the daemon's per-layer rows (Docker's "Loading layer"), the last one complete
    assert re.search(rf"{layer}: Loading layer \[=+>\] [\d.]+MB/[\d.]+MB", tty), tty
    r = run_cli(paths, "load", "-i", str(out))          # not a terminal: plain lines
    assert r.returncode == 0 and r.stdout == "Loaded image: prog:1\n", r.stdout
    assert f"{layer}: Loading layer\n" in r.stderr and ESC not in r.stderr, r.stderr
    code, tty, _ = on_terminal(paths, "load", stdin=out.read_bytes())
    assert code == 0 and "stdin: Uploading" in tty and "stdin: Uploaded" in tty, tty
    r = run_cli(paths, "load", "-q", "-i", str(out))
    assert r.returncode == 0 and r.stderr == "", r.stderr

    # build: the context upload
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM prog:1\nCOPY data /data\n")
    (ctx / "data").write_bytes(os.urandom(3 << 20))
    code, tty, _ = on_terminal(paths, "build", "-t", "prog:built", str(ctx))
    assert code == 0, tty
    assert "build context: Sending [" in tty and ESC in tty, tty
    assert re.search(r"build context: Sent 3\.\d+MB", tty), tty
    r = run_cli(paths, "build", "-q", "-t", "prog:built2", str(ctx))
    assert r.returncode == 0 and r.stderr == "", r.stderr


def test_pull_and_push_bars_on_a_terminal(daemon, aiorun_paths, busybox_tar, tmp_path):
    paths = aiorun_paths
    reg = start_registry(tmp_path)
    try:
        ref = f"{reg.host}/prog:1"
        assert run_cli(paths, "import", str(busybox_tar), ref).returncode == 0
        code, tty, _ = on_terminal(paths, "push", ref)
        assert code == 0, tty
        assert re.search(r"[0-9a-f]{12}: Pushing \[=*>?\s*\] ", tty), tty
        assert re.search(r"\x1b\[\d+A\r\x1b\[2K[0-9a-f]{12}: Pushed", tty), tty
        assert run_cli(paths, "rmi", ref).returncode == 0
        code, tty, _ = on_terminal(paths, "pull", ref)
        assert code == 0, tty
        assert re.search(r"[0-9a-f]{12}: Downloading \[=*>?\s*\] ", tty), tty
        assert re.search(r"\x1b\[\d+A\r\x1b\[2K[0-9a-f]{12}: Pull complete", tty), tty
        # not a terminal: plain lines, no escapes, no bars
        assert run_cli(paths, "rmi", ref).returncode == 0
        r = run_cli(paths, "pull", ref)
        assert r.returncode == 0 and ESC not in r.stdout and "[=" not in r.stdout, r.stdout
        assert re.search(r"^[0-9a-f]{12}: Pull complete$", r.stdout, re.M), r.stdout
    finally:
        reg.stop()

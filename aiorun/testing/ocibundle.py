"""OCI bundles for the tests and the bench: a busybox rootfs and a config.json from
``aiorun-runtime spec``'s defaults, changed per test; and the runtimes to run them with."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from aiorun.oci.spec import default_spec
from aiorun.testing.images import BUSYBOX, busybox_applets


def runtime_path() -> str:
    """The ``aiorun-runtime`` of this environment (next to the interpreter)."""
    p = Path(sys.executable).parent / "aiorun-runtime"
    if not p.exists():
        raise FileNotFoundError(f"{p} missing: run scripts/setup.sh (pip install -e .)")
    return str(p)


def make_rootfs(dest: Path) -> Path:
    """A busybox rootfs directory: /bin/busybox, one symlink per applet, /etc files."""
    (dest / "bin").mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, dest / "bin" / "busybox")
    for applet in busybox_applets():
        name = os.path.basename(applet)
        link = dest / "bin" / name
        if name != "busybox" and not link.exists():
            link.symlink_to("busybox")
    for d in ("etc", "tmp", "proc", "sys", "dev", "root", "run"):
        (dest / d).mkdir(exist_ok=True)
    (dest / "tmp").chmod(0o1777)
    (dest / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                         "nobody:x:65534:65534:nobody:/:/bin/sh\n")
    (dest / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
    return dest


def base_config(args: list[str], cgroups_path: str = "") -> dict[str, Any]:
    """The default spec, not on a terminal, with a writable rootfs, running ``args``."""
    cfg = copy.deepcopy(default_spec())
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = args
    cfg["root"]["readonly"] = False
    if cgroups_path:
        cfg["linux"]["cgroupsPath"] = cgroups_path
    return cfg


def make_bundle(dest: Path, cfg: dict[str, Any], rootfs: Path | None = None) -> Path:
    """``dest``/config.json + ``dest``/rootfs (a copy-free symlink-free busybox tree, or
    ``rootfs`` referenced by absolute path)."""
    dest.mkdir(parents=True, exist_ok=True)
    cfg = copy.deepcopy(cfg)
    if rootfs is None:
        make_rootfs(dest / "rootfs")
    else:
        cfg["root"]["path"] = str(rootfs)
    (dest / "config.json").write_text(json.dumps(cfg, indent=1))
    return dest


def run(runtime: str, root: Path, *args: str, timeout: float = 60,
        **kw: Any) -> subprocess.CompletedProcess:
    """``runtime --root ROOT args...`` with its output captured as text.

    Captured through files, not pipes: a container made by ``create`` inherits the
    runtime's stdio (as with runc) and would hold a pipe open long after the runtime
    exited."""
    import tempfile
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.run([runtime, "--root", str(root), *args], stdout=out, stderr=err,
                           stdin=kw.pop("stdin", subprocess.DEVNULL), timeout=timeout, **kw)
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(p.args, p.returncode,
                                           out.read().decode(errors="replace"),
                                           err.read().decode(errors="replace"))


def remove_cgroup_parent(path: str, timeout: float = 5.0) -> list[str]:
    """rmdir ``/sys/fs/cgroup/*<path>`` in every hierarchy (a parent the runtimes keep, as
    runc does), retrying while the last tasks drain; the directories that stayed."""
    import time
    left = []
    for p in Path("/sys/fs/cgroup").glob(f"*{path}"):
        deadline = time.monotonic() + timeout
        while True:
            try:
                p.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                if time.monotonic() > deadline:
                    left.append(str(p))
                    break
                time.sleep(0.02)
    return left

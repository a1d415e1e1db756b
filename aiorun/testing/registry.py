"""A real registry for tests: Debian's ``docker-registry`` (the distribution registry) on a
free loopback port, its storage in a temporary directory, stopped by PID.

    reg = start_registry(tmp_path)                          # open
    reg = start_registry(tmp_path, users={"alice": "pw"})   # htpasswd basic auth
    reg = start_registry(tmp_path, tls=(cert, key, ca))      # served over TLS only
    ...
    reg.stop()

Token auth (``auth: token``) needs a token issuer the test runs; pass its settings as
``extra_config`` (a dict merged into the YAML config's top level).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiorun.testing.util import free_port

BINARY = "docker-registry"


@dataclass
class Registry:
    proc: subprocess.Popen[bytes]
    port: int
    root: Path
    tls: bool = False

    @property
    def host(self) -> str:
        """``127.0.0.1:<port>``: what image references name."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    def log(self) -> str:
        try:
            return (self.root / "registry.log").read_text()[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM by PID, then SIGKILL if it lingers."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def available() -> bool:
    return shutil.which(BINARY) is not None


def _htpasswd(path: Path, users: dict[str, str]) -> None:
    """bcrypt entries (the registry accepts only bcrypt) via apache2-utils' htpasswd."""
    lines = []
    for user, pw in users.items():
        out = subprocess.run(["htpasswd", "-Bbn", user, pw], capture_output=True, text=True,
                             check=True).stdout.strip()
        lines.append(out)
    path.write_text("\n".join(lines) + "\n")


def start_registry(tmp: Path, *, users: dict[str, str] | None = None,
                   extra_config: dict[str, Any] | None = None,
                   tls: tuple[Path, Path, Path] | None = None,
                   timeout: float = 20.0) -> Registry:
    """Start a registry; return once ``GET /v2/`` answers (200, or 401 with auth).

    ``tls``: (server certificate, its key, the CA that signed it) — the registry then serves
    HTTPS only, and the readiness probe trusts that CA."""
    root = Path(tmp) / f"registry-{os.getpid()}-{time.monotonic_ns()}"
    (root / "data").mkdir(parents=True)
    port = free_port()
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(root / "data")},
                    "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": "aiorun-test"},
    }
    context = None
    if tls is not None:
        config["http"]["tls"] = {"certificate": str(tls[0]), "key": str(tls[1])}
        context = ssl.create_default_context(cafile=str(tls[2]))
    if users:
        _htpasswd(root / "htpasswd", users)
        config["auth"] = {"htpasswd": {"realm": "aiorun-test", "path": str(root / "htpasswd")}}
    config.update(extra_config or {})
    # JSON is YAML: no YAML library needed.
    (root / "config.yml").write_text(json.dumps(config, indent=1))
    logf = open(root / "registry.log", "wb")
    proc = subprocess.Popen([BINARY, "serve", str(root / "config.yml")], stdout=logf,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    logf.close()
    reg = Registry(proc, port, root, tls is not None)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"docker-registry exited ({proc.returncode}): {reg.log()}")
        try:
            urllib.request.urlopen(f"{reg.url}/v2/", timeout=2, context=context).close()
            return reg
        except urllib.error.HTTPError as exc:
            if exc.code == 401:
                return reg
        except OSError:
            pass
        if time.monotonic() > deadline:
            reg.stop()
            raise RuntimeError(f"docker-registry did not answer within {timeout} s: "
                               f"{reg.log()}")
        time.sleep(0.05)

"""What a RUN step gets besides its command: ``--network``, ``--mount``, a heredoc script.

* :mod:`.runflags` parses and checks the flags (at parse time, in BuildKit's words).
* :class:`RunSetup` prepares a step's mounts on the host side and, after the step, removes
  everything it put into the snapshot (mount points it had to create) and on the host
  (secret files), so none of it ends up in the layer or the history.

``--network``: ``none`` runs the step in its own network namespace, loopback only;
``default`` (as no flag) runs it on the build's network (``networkmode``: loopback only, or
the host's); ``host`` needs BuildKit's ``network.host`` entitlement (:mod:`.entitlements`).

``--mount`` (BuildKit's CSV syntax; values may use build variables):

* ``type=tmpfs,target=P[,size=N]`` — an empty tmpfs.
* ``type=cache,target=P[,id=I][,source=SUB][,sharing=shared|locked|private][,mode,uid,gid]
  [,ro]`` — a directory kept between builds under ``<build cache root>/mounts/`` by ``id``
  (default: the target); ``locked`` lets one step at a time use it, ``private`` gives a
  step that finds it in use a fresh empty directory (discarded after the step).
* ``type=secret[,id=I][,target=P][,required][,mode,uid,gid]`` — the build's secret ``I``
  (``--secret id=I,src=FILE``) as a read-only file at P (default ``/run/secrets/<id>``); a
  missing secret is skipped unless ``required``. Secrets are not in the cache key, the
  layer or the history.
* ``type=bind,target=P[,source=S][,from=STAGE|IMAGE][,rw]`` — S (default ``/``) of the build
  context (``.dockerignore`` applied) or of a stage's / an image's filesystem (a throwaway
  snapshot of its layers); read-only unless ``rw`` (writes are discarded). The context
  content, or the stage's layers, are part of the step's cache key.

* ``type=cache,...,from=STAGE|IMAGE[,source=S]`` — as above, but a new cache directory
  starts as a copy of S (default ``/``) of that stage's / image's filesystem, as BuildKit
  seeds it; the directory is keyed by ``id`` *and* that base (its layers and S), so a changed
  base starts a fresh cache (BuildKit keys it by id and base ref too).
* ``type=ssh[,id=I][,target=P][,required][,uid,gid,mode]`` — the agent socket the build
  forwards as ``I`` (default ``default``; :mod:`.buildssh`), relayed by a socket of the
  step's own (:mod:`.sshproxy`; owner ``uid:gid``, default 0:0, ``mode`` default 0600, as
  BuildKit's) bind-mounted at P (default ``/run/buildkit/ssh_agent.N``), ``SSH_AUTH_SOCK`` set
  to the step's first one (unless the environment sets it); not forwarded: skipped unless
  ``required``. Not in the cache key.

A ``RUN <<EOF`` whose script starts with ``#!`` runs as a file, as BuildKit does: the script is
bind-mounted read-only at ``/dev/pipes/<name>`` (inside the step's own /dev tmpfs).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import posixpath
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping

from aiorun.core.safepath import resolve_in_root
from aiorun.errors import InvalidArgument
from aiorun.images.build.cache import walk_sorted
from aiorun.images.build.dockerfile.config import heredoc_script, heredoc_script_path
from aiorun.images.build.entitlements import require
from aiorun.images.build.host import RunMount
from aiorun.images.build.runflags import MountOpts, check_run_flags, mounts_of
from aiorun.images.build.sshproxy import AgentProxy

__all__ = ["MountOpts", "RunSetup", "bind_digest", "check_run_flags", "mounts_of"]

if TYPE_CHECKING:  # pragma: no cover
    from aiorun.drivers.storage import StorageDriver
    from aiorun.images.build.context import DockerIgnore
    from aiorun.images.build.dockerfile.parser import Instruction


def bind_digest(mounts: list[MountOpts], context: Path, ignore: "DockerIgnore") -> str:
    """The content of the context paths bind-mounted (for the step's cache key)."""
    h = hashlib.sha256()
    for m in mounts:
        if m.type != "bind" or m.from_:
            continue
        rel = posixpath.normpath("/" + m.source).lstrip("/") or "."
        top = resolve_in_root(context, rel)
        h.update(f"{m.target}\0{rel}\0".encode())
        for path in walk_sorted(top):
            r = os.path.relpath(path, context)
            if r != "." and ignore.excluded(r):
                continue
            st = os.lstat(path)
            h.update(f"{r}\0{st.st_mode:o}\0{st.st_size}\0".encode())
            if os.path.islink(path):
                h.update(os.readlink(path).encode())
            elif os.path.isfile(path):
                with open(path, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
    return h.hexdigest()


class RunSetup:
    """The host-side preparation of one RUN step (call :meth:`prepare` and :meth:`cleanup`
    in a worker thread). ``work`` is a fresh directory of the build's for this step;
    ``mounts`` its expanded ``--mount``s (:func:`mounts_of`)."""

    def __init__(self, ins: "Instruction", work: Path, rootfs: Path,
                 mounts: list[MountOpts] | None = None, *, cache_root: Path | None = None,
                 context: Path | None = None, ignore: "DockerIgnore | None" = None,
                 secrets: Mapping[str, bytes] | None = None,
                 ssh: Mapping[str, str] | None = None,
                 sources: Mapping[str, list[str]] | None = None,
                 storage: "StorageDriver | None" = None,
                 note: Callable[[str], None] | None = None) -> None:
        self.ins = ins
        self.work = work
        self.rootfs = rootfs
        self.mounts = list(mounts or [])
        self.cache_root = cache_root
        self.context = context
        self.ignore = ignore
        self.secrets = dict(secrets or {})
        self.ssh = dict(ssh or {})           # ssh id -> agent socket path (checked)
        self._ssh_targets: list[str] = []
        self._proxies: list[AgentProxy] = []  # the steps' own agent sockets (.sshproxy)
        self.sources = dict(sources or {})   # bind from=: ref -> its layers
        self.storage = storage
        self.note = note                     # records a snapshot id before it is made
        self._snapshots: list[str] = []
        self._stubs: list[str] = []      # mount points created in the snapshot
        self._locks: list[int] = []      # fds holding sharing=locked caches
        self._private: list[Path] = []   # host files to remove (secret copies, bind trees)

    def network(self, build_network: str = "none", allow: frozenset[str] = frozenset()
                ) -> str:
        """The runtime network mode of the step: ``RUN --network=none`` is loopback only;
        ``host`` the host's, when ``allow`` grants ``network.host`` (InvalidArgument
        otherwise); ``default`` (or no flag) is the build's ``build_network``."""
        flag = self.ins.flags.get("network")
        if flag == "host":
            require(self.ins, allow)
        return flag if flag in ("none", "host") else build_network

    def env(self, env: list[str]) -> list[str]:
        """The step's environment ``env`` plus ``SSH_AUTH_SOCK`` for its first ssh mount
        (call after :meth:`prepare`; a set ``SSH_AUTH_SOCK`` is kept, as BuildKit does)."""
        if not self._ssh_targets or any(e.startswith("SSH_AUTH_SOCK=") for e in env):
            return env
        return [*env, f"SSH_AUTH_SOCK={self._ssh_targets[0]}"]

    def prepare(self) -> list[RunMount]:
        """The step's mounts (files they need are written under ``work``)."""
        out: list[RunMount] = []
        script = heredoc_script(self.ins)
        if script is not None:
            f = self._private_file("pipes", posixpath.basename(self.ins.heredocs[0].name)
                                   or "script", script, 0o755)
            out.append(RunMount(destination=heredoc_script_path(self.ins), source=str(f),
                                readonly=True))
        for n, m in enumerate(self.mounts):
            mount = self._one(n, m)
            if mount is not None:
                self._note_stub(mount.destination)
                out.append(mount)
        return out

    def _one(self, n: int, m: MountOpts) -> RunMount | None:
        if m.type == "tmpfs":
            return RunMount(destination=m.target, type="tmpfs", source="tmpfs",
                            readonly=m.readonly,
                            options=(f"size={m.size}",) if m.size else ())
        if m.type == "cache":
            return RunMount(destination=m.target, source=str(self._cache_dir(m)),
                            readonly=m.readonly)
        if m.type == "secret":
            data = self.secrets.get(m.id)
            if data is None:
                if m.required:
                    raise InvalidArgument(f"secret {m.id}: not found (pass it with --secret "
                                          f"id={m.id},src=FILE)")
                return None
            f = self._private_file("secrets", str(n), data,
                                   m.mode if m.mode is not None else 0o400,
                                   m.uid or 0, m.gid or 0)
            return RunMount(destination=m.target, source=str(f), readonly=True)
        if m.type == "ssh":
            sock = self.ssh.get(m.id)
            if sock is None:
                if m.required:
                    raise InvalidArgument(f"ssh {m.id}: no SSH agent forwarded (pass it with "
                                          f"--ssh {m.id}[=SOCKET])")
                return None
            d = self.work / "ssh"
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
            proxy = AgentProxy(d / str(n), sock, m.uid or 0, m.gid or 0,
                               m.mode if m.mode is not None else 0o600)
            self._proxies.append(proxy)
            self._ssh_targets.append(m.target)
            # a socket is connected to, never written: read-only or not makes no difference
            return RunMount(destination=m.target, source=str(proxy.path), readonly=False)
        if m.from_:
            root = self._snapshot(m.from_)
            rel = posixpath.normpath("/" + m.source)
            src = resolve_in_root(root, rel)
            if not os.path.lexists(src):
                raise InvalidArgument(f"RUN --mount=type=bind,from={m.from_}: {rel} does "
                                      "not exist there")
            return RunMount(destination=m.target, source=str(src), readonly=m.readonly)
        return RunMount(destination=m.target, source=str(self._bind_tree(n, m)),
                        readonly=m.readonly)

    def _snapshot(self, ref: str) -> Path:
        """A throwaway snapshot of ``ref``'s layers (writes to it are discarded)."""
        import secrets as _secrets
        if self.storage is None or ref not in self.sources:  # pragma: no cover
            raise InvalidArgument(f"RUN --mount from={ref}: no such stage or image")
        sid = _secrets.token_hex(32)
        if self.note is not None:
            self.note(sid)
        self.storage.create_container(sid, list(self.sources[ref]), {})
        self._snapshots.append(sid)
        return Path(self.storage.mount(sid))

    def _private_file(self, kind: str, name: str, data: bytes, mode: int, uid: int = 0,
                      gid: int = 0) -> Path:
        d = self.work / kind
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        f = d / name
        fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with open(fd, "wb") as fo:
            fo.write(data)
        os.chown(f, uid, gid)
        os.chmod(f, mode)
        self._private.append(f)
        return f

    def _cache_dir(self, m: MountOpts) -> Path:
        if self.cache_root is None:  # pragma: no cover - the builder always gives one
            raise InvalidArgument("RUN --mount=type=cache needs the build cache")
        ident = m.id
        if m.from_:    # keyed by its base too (BuildKit: "cache-dir:<id>:<base ref>")
            ident += "\0" + ",".join(self.sources.get(m.from_, [])) + "\0" + \
                posixpath.normpath("/" + m.source)
        base = self.cache_root / "mounts" / hashlib.sha256(ident.encode()).hexdigest()[:32]
        if not base.exists():
            self._new_cache_dir(base, m)
            (base.parent / f"{base.name}.id").write_text(m.id)
        if m.sharing in ("locked", "private"):
            fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
            try:
                # locked: one step at a time (waits, in a worker thread); private: a step
                # that finds it in use gets a fresh, empty directory of its own instead
                fcntl.flock(fd, fcntl.LOCK_EX | (fcntl.LOCK_NB if m.sharing == "private"
                                                 else 0))
            except BlockingIOError:
                os.close(fd)
                fresh = self.work / "caches" / hashlib.sha256(ident.encode()).hexdigest()[:16]
                fresh.parent.mkdir(parents=True, exist_ok=True)
                self._new_cache_dir(fresh, m)
                self._private.append(fresh)
                base = fresh
            else:
                self._locks.append(fd)
        if m.source and not m.from_:     # with from=, source is a path of the base
            sub = resolve_in_root(base, m.source)
            sub.mkdir(parents=True, exist_ok=True)
            return sub
        return base

    def _new_cache_dir(self, path: Path, m: MountOpts) -> None:
        """Make the cache directory ``path``: empty, or (``from=``) a copy of the base's
        ``source``, made next to it and renamed into place so a half copy is never used."""
        if not m.from_:
            path.mkdir(parents=True, mode=0o755)
            os.chown(path, m.uid or 0, m.gid or 0)
            os.chmod(path, m.mode if m.mode is not None else 0o755)
            return
        rel = posixpath.normpath("/" + m.source)
        src = resolve_in_root(self._snapshot(m.from_), rel)
        if not src.is_dir():
            raise InvalidArgument(f"RUN --mount=type=cache,from={m.from_}: {rel} is not a "
                                  "directory there")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.name}.seeding-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        # cp -a: owners, modes, links, special files and times as the base has them
        r = subprocess.run(["cp", "-a", "--", str(src), str(tmp)], capture_output=True,
                           text=True)
        if r.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            raise InvalidArgument(f"RUN --mount=type=cache,from={m.from_}: seeding the cache "
                                  f"failed: {r.stderr.strip()}")
        if m.uid is not None or m.gid is not None:
            os.chown(tmp, m.uid or 0, m.gid or 0)
        if m.mode is not None:
            os.chmod(tmp, m.mode)
        try:
            os.rename(tmp, path)
        except OSError:          # another step seeded it first: use theirs
            shutil.rmtree(tmp, ignore_errors=True)

    def _bind_tree(self, n: int, m: MountOpts) -> Path:
        """A read-only copy of the context's ``source`` with .dockerignore applied."""
        if self.context is None:  # pragma: no cover
            raise InvalidArgument("RUN --mount=type=bind needs the build context")
        rel = posixpath.normpath("/" + m.source).lstrip("/") or "."
        src = resolve_in_root(self.context, rel)
        if not os.path.lexists(src) or (rel != "." and self.ignore is not None
                                        and self.ignore.excluded(rel)):
            raise InvalidArgument(f"RUN --mount=type=bind: {m.source or '.'} not found in "
                                  "the build context")
        dest = self.work / "binds" / str(n)
        dest.parent.mkdir(parents=True, exist_ok=True)
        ignore = self.ignore
        context = self.context

        def skip(d: str, names: list[str]) -> list[str]:
            if ignore is None:
                return []
            return [x for x in names
                    if ignore.excluded(os.path.relpath(os.path.join(d, x), context))]
        if src.is_dir() and not src.is_symlink():
            shutil.copytree(src, dest, symlinks=True, ignore=skip)
        else:
            shutil.copy2(src, dest, follow_symlinks=False)
        self._private.append(dest)
        return dest

    def _note_stub(self, dest: str) -> None:
        """Remember the components of ``dest`` the runtime will create in the snapshot."""
        top = posixpath.normpath(dest).split("/")[1:2]
        if not top or top[0] in ("dev", "proc", "sys"):
            return        # the step's own /dev, /proc, /sys: never in the snapshot
        parts = [p for p in posixpath.normpath(dest).split("/") if p]
        for i in range(1, len(parts) + 1):
            path = "/" + "/".join(parts[:i])
            if not os.path.lexists(resolve_in_root(self.rootfs, path)):
                self._stubs.append(path)
                return    # everything below it is new too; removing it removes them

    def cleanup(self) -> None:
        """Remove the mount points this step created in the snapshot (when still empty, as
        the runtime left them), the host files it wrote, and release cache locks."""
        for path in self._stubs:
            self._remove_empty(resolve_in_root(self.rootfs, path))
        for p in self._private:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
        for proxy in self._proxies:
            proxy.close()
        self._proxies.clear()
        for fd in self._locks:
            os.close(fd)
        self._locks.clear()
        if self.storage is not None:
            for sid in self._snapshots:
                try:
                    self.storage.unmount(sid)
                finally:
                    self.storage.remove_container(sid)
        self._snapshots.clear()

    @staticmethod
    def _remove_empty(host: Path) -> None:
        """Remove ``host`` if it is an empty file or a tree of empty directories/files."""
        try:
            if host.is_symlink():
                return
            if host.is_dir():
                for child in host.iterdir():
                    RunSetup._remove_empty(child)
                host.rmdir()
            elif host.stat().st_size == 0:
                host.unlink()
        except OSError:
            pass

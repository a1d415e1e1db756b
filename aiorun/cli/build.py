"""``aiorun build [-t TAG]... [-f Dockerfile] [--build-arg K[=V]]... [--label K=V]... [-q]
[--target STAGE] [--iidfile FILE] [--no-cache] [--secret id=ID,src=FILE]...
[--ssh default|ID[=SOCKET]]... [--allow network.host] PATH|-``

The context directory is sent as a tar (``.dockerignore`` honoured, the Dockerfile and
.dockerignore always included); a Dockerfile outside the context is added under a private
name, as is one read from stdin (``-f -``). ``<Dockerfile>.dockerignore`` next to the
Dockerfile replaces the context's ``.dockerignore``. ``-`` reads a context tar, or a bare
Dockerfile, from stdin.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import sys
import tarfile
import tempfile
from typing import Any

from aiorun.cli.options import BOOL, LIST, STR, Opts, Option, UsageError, need, verb


def _kv(items: list[str], what: str, from_env: bool = False) -> dict[str, str]:
    out: dict[str, str] = {}
    for it in items:
        k, eq, v = it.partition("=")
        if not k:
            raise UsageError(f"invalid {what} {it!r} (want KEY=VALUE)")
        if not eq and from_env:
            if k not in os.environ:
                continue  # docker skips a --build-arg NAME that is not in the environment
            v = os.environ[k]
        out[k] = v
    return out


@verb("build", "PATH | -", "Build an image from a Dockerfile",
      Option("-t --tag", LIST, "Name and optionally a tag (name:tag)"),
      Option("-f --file", STR, "Name of the Dockerfile (default: PATH/Dockerfile)"),
      Option("--build-arg", LIST, "Set build-time variables (K=V; K alone takes the local "
             "value)"),
      Option("--label", LIST, "Set metadata for an image (K=V)"),
      Option("-q --quiet", BOOL, "Suppress the build output and print image ID on success"),
      Option("--target", STR, "Build up to this stage of a multi-stage Dockerfile"),
      Option("--iidfile", STR, "Write the image ID to this file"),
      Option("--no-cache", BOOL, "Do not use the build cache"),
      Option("--rm", STR, "Accepted; intermediates are always removed", default="true",
             metavar="bool"),
      Option("--pull", BOOL, "Always attempt to pull a newer version of the image"),
      Option("--secret", LIST, "Secret for RUN --mount=type=secret (id=ID,src=FILE or "
             "id=ID,env=VAR)"),
      Option("--ssh", LIST, "SSH agent socket for RUN --mount=type=ssh (default|ID[=SOCKET]; "
             "default: $SSH_AUTH_SOCK)"),
      Option("--allow", LIST, "Allow an extra privileged entitlement (network.host)"),
      Option("--network", STR, "Networking mode for the RUN instructions: default (none) "
             "or host"),
      Option("--add-host", LIST, "Add a custom host-to-IP mapping (host:ip) for RUN"),
      Option("--cache-from", LIST, "Images to consider as cache sources"))
def cmd_build(ctx: Any, a: Opts, args: list[str]) -> int:
    need(args, "build", 1, 1)
    path = args[0]
    from aiorun.images.build.context import write_context_tar

    from aiorun.images.build import buildsecrets
    headers = {"Content-Type": "application/x-tar"}
    if a.secret:
        from aiorun.errors import InvalidArgument
        try:
            headers[buildsecrets.HEADER] = buildsecrets.encode(
                dict(buildsecrets.parse_spec(s) for s in a.secret))
        except InvalidArgument as exc:
            raise UsageError(exc.message) from None
    if a.ssh:
        from aiorun.errors import InvalidArgument
        from aiorun.images.build import buildssh
        try:
            headers[buildssh.HEADER] = buildssh.encode(
                dict(buildssh.parse_spec(s) for s in a.ssh))
        except InvalidArgument as exc:
            raise UsageError(exc.message) from None
    dockerfile_name = "Dockerfile"
    with tempfile.TemporaryFile(prefix="aiorun-ctx-") as tmp:
        if path == "-" and a.file == "-":
            sys.stderr.write("aiorun build: invalid argument: can't use stdin for both build "
                             "context and dockerfile\n")
            return 1
        if path == "-":
            data = sys.stdin.buffer.read()
            try:
                tarfile.open(fileobj=io.BytesIO(data), mode="r:*").getmembers()
                tmp.write(data)
            except tarfile.TarError:   # not a tar: a Dockerfile without context
                with tarfile.open(fileobj=tmp, mode="w|") as t:
                    ti = tarfile.TarInfo("Dockerfile")
                    ti.size = len(data)
                    t.addfile(ti, io.BytesIO(data))
            if a.file:
                dockerfile_name = a.file
        else:
            root = os.path.abspath(path)
            if not os.path.isdir(root):
                sys.stderr.write(f"aiorun build: unable to prepare context: path {path!r} "
                                 "not found\n")
                return 1
            extra: dict[str, bytes] = {}
            if a.file == "-":     # the Dockerfile from stdin, the context from PATH
                dockerfile_name = f".dockerfile.{secrets.token_hex(10)}"
                extra[dockerfile_name] = sys.stdin.buffer.read()
            elif a.file:
                df = os.path.abspath(a.file)
                rel = os.path.relpath(df, root)
                if rel.startswith(".." + os.sep) or rel == "..":
                    try:
                        with open(df, "rb") as f:
                            content = f.read()
                    except OSError as exc:
                        sys.stderr.write(f"aiorun build: cannot read Dockerfile {a.file}: "
                                         f"{exc.strerror}\n")
                        return 1
                    dockerfile_name = f".dockerfile.{secrets.token_hex(10)}"
                    extra[dockerfile_name] = content
                else:
                    dockerfile_name = rel.replace(os.sep, "/")
            elif not os.path.exists(os.path.join(root, "Dockerfile")):
                sys.stderr.write(f"aiorun build: Cannot locate specified Dockerfile: "
                                 f"{os.path.join(path, 'Dockerfile')}\n")
                return 1
            own_ignore = None    # <Dockerfile>.dockerignore next to the Dockerfile
            if a.file and a.file != "-":
                try:
                    with open(os.path.abspath(a.file) + ".dockerignore") as f:
                        own_ignore = f.read()
                except OSError:
                    pass
            write_context_tar(root, tmp, keep=(dockerfile_name, ".dockerignore"), extra=extra,
                              ignore_rules=own_ignore)
        size = tmp.seek(0, os.SEEK_END)
        tmp.seek(0)
        from aiorun.cli.progress import Transfer, reading, stderr_printer
        body = reading(tmp, Transfer(stderr_printer(bool(a.quiet)), "build context",
                                     "Sending", "Sent", size))
        query = {"dockerfile": dockerfile_name,
                 # tags can never contain ',', so several fit in one parameter
                 "t": ",".join(a.tag) or None,
                 "buildargs": _kv(a.build_arg, "build-arg", from_env=True) or None,
                 "labels": _kv(a.label, "label") or None,
                 "q": True if a.quiet else None, "rm": True,
                 "nocache": True if a.no_cache else None, "target": a.target or None,
                 "pull": True if a.pull else None,
                 "networkmode": a.network or None,
                 "extrahosts": ",".join(a.add_host) or None,
                 "cachefrom": json.dumps(list(a.cache_from)) if a.cache_from else None,
                 "allow": ",".join(a.allow) or None}
        resp = ctx.client().request("POST", "/build", query, body=body, headers=headers)
        rc = 0
        try:
            for line in resp.iter_lines():
                try:
                    msg = json.loads(line)
                except ValueError:
                    sys.stdout.write(line.decode(errors="replace") + "\n")
                    continue
                if "error" in msg:
                    sys.stderr.write(f"{msg['error'].rstrip()}\n")
                    rc = 1
                elif "aux" in msg and a.iidfile:
                    with open(a.iidfile, "w") as f:
                        f.write(msg["aux"].get("ID", ""))
                elif "stream" in msg:
                    sys.stdout.write(msg["stream"])
                    sys.stdout.flush()
        finally:
            resp.close()
        return rc

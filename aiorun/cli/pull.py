"""``aiorun pull NAME[:TAG|@DIGEST]``, and the pull ``run``/``create`` do for a missing image.

A thin client: ``POST /images/create?fromImage=&tag=&platform=`` and the rendering of
Docker's JSON progress stream. On a terminal each layer keeps one line, rewritten in place
(``<id>: Downloading [=====>     ] 1.2MB/3.4MB``); otherwise every status change is one
plain line (progress updates without a status change are not repeated).

Imports only the standard library and the API client: the CLI's start-up stays lean.
"""

from __future__ import annotations

import json
import sys

from aiorun.cli.options import BOOL, STR, Option, err, need, verb

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TextIO

    from aiorun.cli.options import Opts


def split_reference(ref: str) -> tuple[str, str]:
    """``fromImage`` and ``tag`` as the docker CLI sends them (the tag is a digest for
    ``name@sha256:...``; ``latest`` when neither is given)."""
    name, at, digest = ref.partition("@")
    if at:
        return name, digest
    slash, colon = name.rfind("/"), name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1:]
    return name, "latest"


class ProgressPrinter:
    """Renders Docker's JSON messages: in place on a terminal, plain lines otherwise."""

    def __init__(self, out: TextIO, tty: bool) -> None:
        self.out = out
        self.tty = tty
        self.rows: list[str] = []          # layer ids, in the order first seen (tty)
        self.last: dict[str, str] = {}     # layer id -> last status printed

    def show(self, msg: dict[str, Any]) -> None:
        status = str(msg.get("status") or "")
        ident = str(msg.get("id") or "")
        if not status:
            return
        if not ident or not self._is_layer(msg):
            self.out.write(f"{ident}: {status}\n" if ident else f"{status}\n")
            self.out.flush()
            return
        line = f"{ident}: {status}"
        if msg.get("progress") and self.tty:
            line += f" {msg['progress']}"
        if self.tty:
            self._draw(ident, line)
        elif self.last.get(ident) != status:
            self.last[ident] = status
            self.out.write(line + "\n")
            self.out.flush()

    @staticmethod
    def _is_layer(msg: dict[str, Any]) -> bool:
        return "progressDetail" in msg

    def _draw(self, ident: str, line: str) -> None:
        if ident not in self.rows:
            self.rows.append(ident)
            self.out.write(line + "\n")
        else:
            up = len(self.rows) - self.rows.index(ident)
            # up to the layer's row, rewrite it, back down
            self.out.write(f"\x1b[{up}A\r\x1b[2K{line}\x1b[{up}B\r")
        self.out.flush()


def stream_pull(client: Any, ref: str, out: TextIO, platform: str | None = None) -> int:
    """Pull ``ref`` through the daemon, printing progress on ``out``; 0 or 1."""
    from aiorun.api.client import ApiError
    image, tag = split_reference(ref)
    try:
        resp = client.request("POST", "/images/create",
                              {"fromImage": image, "tag": tag, "platform": platform})
    except ApiError as exc:
        err(f"Error response from daemon: {exc.message}")
        return 1
    printer = ProgressPrinter(out, out.isatty())
    code = 0
    try:
        for line in resp.iter_lines():
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if msg.get("error"):
                err(str(msg["error"]))
                code = 1
            else:
                printer.show(msg)
    finally:
        resp.close()
    return code


@verb("pull", "NAME[:TAG|@DIGEST]", "Download an image from a registry",
      Option("--platform", STR, "Set platform if server is multi-platform capable"),
      Option("-q --quiet", BOOL, "Suppress verbose output"),
      Option("-a --all-tags", BOOL, "Download all tagged images in the repository"))
def cmd_pull(ctx: Any, args: Opts, argv: list[str]) -> int:
    need(argv, "pull", 1, 1)
    if args.all_tags:
        err("aiorun: pull --all-tags is not supported; name a tag or digest")
        return 1
    ref = argv[0]
    image, tag = split_reference(ref)
    if not args.quiet:
        out = sys.stdout
        if "@" not in ref and ":" not in ref.rpartition("/")[2]:
            print(f"Using default tag: {tag}")
        code = stream_pull(ctx.client(), ref, out, args.platform or None)
    else:
        import io
        code = stream_pull(ctx.client(), ref, io.StringIO(), args.platform or None)
    if code == 0:
        print(f"{image}@{tag}" if tag.startswith("sha256:") else f"{image}:{tag}")
    return code


def create_pulling(client: Any, body: dict[str, Any], name: str | None, opts: Opts) -> Any:
    """``POST /containers/create``; when the image is missing, pull it (progress on stderr)
    and create again — what the docker CLI does. ``--pull always|missing|never``,
    ``--platform`` and ``-q`` as docker's."""
    from aiorun.api.client import ApiError
    from aiorun.cli.common import call
    from aiorun.cli.options import UsageError
    policy = (opts.pull or "missing").lower()
    if policy not in ("always", "missing", "never"):
        raise UsageError(f'invalid pull option: "{opts.pull}": must be one of "always", '
                         '"missing" or "never"')
    image = str(body.get("Image") or "")
    query: dict[str, Any] = {"name": name}
    if opts.platform:
        query["platform"] = opts.platform            # checked against the image by the daemon
    out: TextIO = sys.stderr
    if opts.quiet:
        import io
        out = io.StringIO()
    if policy == "always":
        if stream_pull(client, image, out, opts.platform or None) != 0:
            raise SystemExit(125)
        return call(client, "POST", "/containers/create", body, **query)
    try:
        return call(client, "POST", "/containers/create", body, **query)
    except ApiError as exc:
        if policy == "never" or exc.status != 404 or "No such image" not in exc.message:
            raise
    shown = image if ("@" in image or ":" in image.rpartition("/")[2]) else f"{image}:latest"
    err(f"Unable to find image '{shown}' locally")
    if stream_pull(client, image, out, opts.platform or None) != 0:
        raise SystemExit(125)
    return call(client, "POST", "/containers/create", body, **query)

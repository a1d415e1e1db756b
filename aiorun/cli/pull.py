"""``aiorun pull NAME[:TAG|@DIGEST]``, and the pull ``run``/``create`` do for a missing image.

A thin client: ``POST /images/create?fromImage=&tag=&platform=`` and the rendering of
Docker's JSON progress stream (:mod:`aiorun.cli.progress`: per-layer bars on a terminal,
plain lines otherwise).

Imports only the standard library and the API client: the CLI's start-up stays lean.
"""

from __future__ import annotations

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


def stream_pull(client: Any, ref: str, out: TextIO, platform: str | None = None) -> int:
    """Pull ``ref`` through the daemon, printing progress on ``out``; 0 or 1."""
    from aiorun.api.client import ApiError
    # here, not at the top: `run` imports this module for create_pulling, and only pulls
    # when the image is missing (the progress renderer imports json)
    from aiorun.cli.progress import ProgressPrinter, render_stream
    image, tag = split_reference(ref)
    try:
        resp = client.request("POST", "/images/create",
                              {"fromImage": image, "tag": tag, "platform": platform})
    except ApiError as exc:
        err(f"Error response from daemon: {exc.message}")
        return 1
    try:
        return render_stream(resp, ProgressPrinter(out, out.isatty()))
    finally:
        resp.close()


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
    from aiorun.cli.common import api_error, call
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
    shown = image if ("@" in image or ":" in image.rpartition("/")[2]) else f"{image}:latest"
    try:
        return call(client, "POST", "/containers/create", body, **query)
    except ApiError as exc:
        if exc.status != 404 or "No such image" not in exc.message:
            raise
        if policy == "never":
            err(api_error(exc))
            err(missing_image_hint(shown, pulled=False))
            raise SystemExit(125) from None
    err(f"Unable to find image '{shown}' locally")
    if stream_pull(client, image, out, opts.platform or None) != 0:
        err(missing_image_hint(shown))
        raise SystemExit(125)
    return call(client, "POST", "/containers/create", body, **query)


def missing_image_hint(shown: str, pulled: bool = True) -> str:
    """What to do about an image that is neither stored nor pullable."""
    why = "could not be pulled" if pulled else "--pull never forbids pulling it"
    return (f"aiorun: image '{shown}' is not stored here and {why}. Get it "
            "with `aiorun pull` from a registry that has it, `aiorun load -i FILE` (a "
            "`docker save` archive) or `aiorun import FILE NAME` (a root filesystem tarball); "
            "`aiorun images` lists what is stored")

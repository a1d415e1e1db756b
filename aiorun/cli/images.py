"""Image verbs: ``import``, ``images``, ``image ...``, ``tag``, ``rmi``, ``history``, ``save``,
``load`` — thin clients of the image API, printing what docker prints.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from aiorun.api.client import ApiError
from aiorun.cli.flags import filters as _filters

IMAGES_TABLE = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
IMAGES_HEADERS = {"Repository": "REPOSITORY", "Tag": "TAG", "ID": "IMAGE ID",
                  "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "Size": "SIZE",
                  "Digest": "DIGEST", "Containers": "CONTAINERS"}
HISTORY_TABLE = "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"
HISTORY_HEADERS = {"ID": "IMAGE", "CreatedSince": "CREATED", "CreatedBy": "CREATED BY",
                   "Size": "SIZE", "Comment": "COMMENT", "CreatedAt": "CREATED AT"}


# ------------------------------------------------------------------ formatting helpers

def human_size(n: float, precision: int = 3) -> str:
    """go-units ``HumanSizeWithPrecision``: decimal units, as ``docker images`` prints."""
    units = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"]
    i = 0
    n = float(n)
    while n >= 1000 and i < len(units) - 1:
        n /= 1000.0
        i += 1
    s = f"{n:.{precision}g}"
    if "e" in s:  # Go's %g gives the same exponent form; keep plain digits like docker shows
        s = f"{n:.0f}"
    return f"{s}{units[i]}"


def since(ts: float, now: float | None = None) -> str:
    from aiorun.core.state import human_duration
    if not ts:
        return "N/A"
    return human_duration((now or time.time()) - ts) + " ago"


def _short(iid: str, no_trunc: bool) -> str:
    return iid if no_trunc else iid.removeprefix("sha256:")[:12]


def _render(fmt: str, rows: list[dict[str, Any]], headers: dict[str, str]) -> str:
    from aiorun.core.templates import render_table
    return render_table(fmt, rows, headers)


def _err(msg: str) -> None:
    sys.stderr.write(msg.rstrip("\n") + "\n")


def _print_json_stream(resp: Any, quiet: bool = False) -> int:
    """Docker's JSON message stream: print ``stream``/``status`` lines, fail on ``error``."""
    code = 0
    for line in resp.iter_lines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if msg.get("error"):
            _err(msg["error"])
            code = 1
        elif isinstance(msg.get("aux"), dict) and msg["aux"].get("SkippedDeviceNodes"):
            # on stderr: stdout stays the bare image id, as with docker
            _err(f"skipped {msg['aux']['SkippedDeviceNodes']} device node(s) of the tarball "
                 "(the runtime provides /dev)")
        elif not quiet and msg.get("stream"):
            sys.stdout.write(msg["stream"])
        elif msg.get("status"):
            print(msg["status"])
    return code


# ------------------------------------------------------------------ verbs

def cmd_images(ctx, argv: list[str], prog: str = "aiorun images") -> int:
    p = argparse.ArgumentParser(prog=prog, description="List images")
    p.add_argument("reference", nargs="?")
    p.add_argument("-a", "--all", action="store_true", help="Show all images")
    p.add_argument("-q", "--quiet", action="store_true", help="Only show image IDs")
    p.add_argument("--no-trunc", action="store_true", help="Don't truncate output")
    p.add_argument("--digests", action="store_true")
    p.add_argument("-f", "--filter", action="append")
    p.add_argument("--format")
    args = p.parse_args(argv)
    filters = _filters(args.filter)
    if args.reference:
        filters.setdefault("reference", []).append(args.reference)
    images = ctx.client().get("/images/json", filters=filters or None, all=args.all or None)
    now = time.time()
    rows = []
    for im in images:
        tags = im.get("RepoTags") or []
        if not tags:
            tags = ["<none>:<none>"]
        for t in tags:
            repo, _, tag = t.rpartition(":")
            rows.append({"Repository": repo, "Tag": tag, "ID": _short(im["Id"], args.no_trunc),
                         "CreatedSince": since(im.get("Created", 0), now),
                         "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC",
                                                    time.gmtime(im.get("Created", 0))),
                         "Size": human_size(im.get("Size", 0)), "Digest": "<none>",
                         "Containers": "N/A"})
    if args.quiet:
        seen: list[str] = []
        for r in rows:
            if r["ID"] not in seen:
                seen.append(r["ID"])
        sys.stdout.write("".join(f"{i}\n" for i in seen))
        return 0
    sys.stdout.write(_render(args.format or IMAGES_TABLE, rows, IMAGES_HEADERS))
    return 0


def cmd_import(ctx, argv: list[str], prog: str = "aiorun import") -> int:
    p = argparse.ArgumentParser(prog=prog, description="Import the contents from a tarball "
                                "to create a filesystem image")
    p.add_argument("file", metavar="file|-")
    p.add_argument("reference", nargs="?", metavar="REPOSITORY[:TAG]")
    p.add_argument("-c", "--change", action="append", default=[])
    p.add_argument("-m", "--message", default="")
    p.add_argument("--platform")
    args = p.parse_args(argv)
    if args.file == "-":
        src = sys.stdin.buffer
    elif "://" in args.file:
        _err("aiorun: importing from a URL is not supported; download it and import the file")
        return 1
    else:
        try:
            src = open(args.file, "rb")
        except OSError as exc:
            _err(f"open {args.file}: {exc.strerror.lower() if exc.strerror else exc}")
            return 1
    query = {"fromSrc": "-", "repo": args.reference or None, "message": args.message or None,
             "changes": args.change or None}
    resp = ctx.client().request("POST", "/images/create", query, body=src)
    try:
        return _print_json_stream(resp)
    finally:
        resp.close()


def cmd_tag(ctx, argv: list[str], prog: str = "aiorun tag") -> int:
    p = argparse.ArgumentParser(prog=prog, description="Create a tag TARGET_IMAGE that refers "
                                "to SOURCE_IMAGE")
    p.add_argument("source", metavar="SOURCE_IMAGE[:TAG]")
    p.add_argument("target", metavar="TARGET_IMAGE[:TAG]")
    args = p.parse_args(argv)
    from aiorun.images.reference import parse
    ref = parse(args.target)
    r = ctx.client().request("POST", f"/images/{args.source}/tag",
                             {"repo": ref.repo, "tag": ref.tag or "latest"})
    r.read()
    r.close()
    return 0


def cmd_rmi(ctx, argv: list[str], prog: str = "aiorun rmi") -> int:
    p = argparse.ArgumentParser(prog=prog, description="Remove one or more images")
    p.add_argument("images", nargs="+")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("--no-prune", action="store_true")
    args = p.parse_args(argv)
    client = ctx.client()
    code = 0
    for name in args.images:
        try:
            out = client.delete(f"/images/{name}", force=args.force or None,
                                noprune=args.no_prune or None)
        except ApiError as exc:
            _err(f"Error response from daemon: {exc.message}")
            code = 1
            continue
        for entry in out or []:
            for k, v in entry.items():
                print(f"{k}: {v}")
    return code


def cmd_history(ctx, argv: list[str], prog: str = "aiorun history") -> int:
    p = argparse.ArgumentParser(prog=prog, description="Show the history of an image")
    p.add_argument("image")
    p.add_argument("-H", "--human", default="true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("--format")
    args = p.parse_args(argv)
    human = args.human.lower() not in ("false", "0")
    rows = ctx.client().get(f"/images/{args.image}/history")
    now = time.time()
    if args.quiet:
        for r in rows:
            print(r["Id"] if r["Id"] == "<missing>" else _short(r["Id"], args.no_trunc))
        return 0
    out = []
    for r in rows:
        created_by = (r.get("CreatedBy") or "").replace("\t", " ")
        if not args.no_trunc and len(created_by) > 45:
            created_by = created_by[:44] + "…"
        out.append({
            "ID": r["Id"] if r["Id"] == "<missing>" else _short(r["Id"], args.no_trunc),
            "CreatedSince": since(r.get("Created", 0), now) if human else
            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(r.get("Created", 0))),
            "CreatedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(r.get("Created", 0))),
            "CreatedBy": created_by,
            "Size": human_size(r.get("Size", 0)) if human else str(r.get("Size", 0)),
            "Comment": r.get("Comment") or "",
        })
    sys.stdout.write(_render(args.format or HISTORY_TABLE, out, HISTORY_HEADERS))
    return 0


def cmd_save(ctx, argv: list[str], prog: str = "aiorun save") -> int:
    p = argparse.ArgumentParser(prog=prog, description="Save one or more images to a tar archive "
                                "(streamed to STDOUT by default)")
    p.add_argument("images", nargs="+")
    p.add_argument("-o", "--output")
    args = p.parse_args(argv)
    if not args.output and sys.stdout.isatty():
        _err("aiorun: Cowardly refusing to save to a terminal. Use the -o flag or redirect")
        return 1
    client = ctx.client()
    if len(args.images) == 1:
        resp = client.request("GET", f"/images/{args.images[0]}/get")
    else:
        resp = client.request("GET", "/images/get", {"names": args.images})
    tmp = None
    try:
        if args.output:
            tmp = f"{args.output}.aiorun-part-{os.getpid()}"
            out = open(tmp, "wb")
        else:
            out = sys.stdout.buffer
        try:
            for chunk in resp.iter_chunks():
                out.write(chunk)
            out.flush()
        finally:
            if args.output:
                out.close()
        if tmp:
            os.replace(tmp, args.output)
            tmp = None
    finally:
        resp.close()
        if tmp:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
    return 0


def cmd_load(ctx, argv: list[str], prog: str = "aiorun load") -> int:
    p = argparse.ArgumentParser(prog=prog, description="Load an image from a tar archive or STDIN")
    p.add_argument("-i", "--input")
    p.add_argument("-q", "--quiet", action="store_true")
    args = p.parse_args(argv)
    if args.input:
        try:
            src = open(args.input, "rb")
        except OSError as exc:
            _err(f"open {args.input}: {exc.strerror.lower() if exc.strerror else exc}")
            return 1
    else:
        if sys.stdin.isatty():
            _err("aiorun: requested load from stdin, but stdin is empty")
            return 1
        src = sys.stdin.buffer
    resp = ctx.client().request("POST", "/images/load", {"quiet": args.quiet or None}, body=src)
    try:
        return _print_json_stream(resp, quiet=False)
    finally:
        resp.close()


def cmd_image_inspect(ctx, argv: list[str], prog: str = "aiorun image inspect") -> int:
    p = argparse.ArgumentParser(prog=prog, description="Display detailed information on images")
    p.add_argument("images", nargs="+")
    p.add_argument("-f", "--format")
    args = p.parse_args(argv)
    client = ctx.client()
    found, code = [], 0
    for name in args.images:
        try:
            found.append(client.get(f"/images/{name}/json"))
        except ApiError as exc:
            if exc.status != 404:
                raise
            _err(f"Error: No such image: {name}")
            code = 1
    if args.format:
        from aiorun.core.templates import render
        fmt = args.format.replace("\\t", "\t").replace("\\n", "\n")
        for obj in found:
            print(render(fmt, obj))
    else:
        print(json.dumps(found, indent=4))
    return code


def cmd_image_prune(ctx, argv: list[str], prog: str = "aiorun image prune") -> int:
    p = argparse.ArgumentParser(prog=prog, description="Remove unused images")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("--filter", action="append")
    args = p.parse_args(argv)
    filters = _filters(args.filter)
    filters["dangling"] = ["false" if args.all else "true"]
    out = ctx.client().post("/images/prune", None, filters=filters)
    deleted = out.get("ImagesDeleted") or []
    if deleted:
        print("Deleted Images:")
        for entry in deleted:
            for k, v in entry.items():
                print(f"{k.lower()}: {v}")
        print()
    print(f"Total reclaimed space: {human_size(out.get('SpaceReclaimed') or 0)}")
    return 0


_IMAGE_SUB = {
    "ls": cmd_images, "list": cmd_images, "rm": cmd_rmi, "remove": cmd_rmi,
    "inspect": cmd_image_inspect, "history": cmd_history, "tag": cmd_tag, "save": cmd_save,
    "load": cmd_load, "import": cmd_import, "prune": cmd_image_prune,
}


def cmd_image(ctx, argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        sys.stdout.write("usage: aiorun image COMMAND\n\nManage images. Commands:\n  " +
                         ", ".join(sorted(set(_IMAGE_SUB) - {"list", "remove"})) + "\n")
        return 0 if argv else 1
    fn = _IMAGE_SUB.get(argv[0])
    if fn is None:
        _err(f"aiorun: 'image {argv[0]}' is not an aiorun command.")
        return 1
    return fn(ctx, argv[1:], prog=f"aiorun image {argv[0]}")

"""Image verbs: ``import``, ``images``, ``image ...``, ``tag``, ``rmi``, ``history``, ``save``,
``load`` — thin clients of the image API, printing what docker prints.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from aiorun.api.client import ApiError
from aiorun.cli.options import BOOL, LIST, STR, Group, Opts, Option, err, filters, need, verb

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


def _print_json_stream(resp: Any, quiet: bool = False) -> int:
    """Docker's JSON message stream: print ``stream``/``status`` lines, fail on ``error``;
    per-item progress (``Loading layer``) goes to the stderr progress renderer."""
    from aiorun.cli.progress import stderr_printer
    progress = None
    code = 0
    for line in resp.iter_lines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if "progressDetail" in msg and msg.get("id"):
            progress = progress or stderr_printer(quiet)
            progress.show(msg)
        elif msg.get("error"):
            err(msg["error"])
            code = 1
        elif isinstance(msg.get("aux"), dict) and msg["aux"].get("SkippedDeviceNodes"):
            # on stderr: stdout stays the bare image id, as with docker
            err(f"skipped {msg['aux']['SkippedDeviceNodes']} device node(s) of the tarball "
                 "(the runtime provides /dev)")
        elif not quiet and msg.get("stream"):
            sys.stdout.write(msg["stream"])
        elif msg.get("status"):
            print(msg["status"])
    return code


def _uploading(src: Any, ident: str, quiet: bool) -> Any:
    """``src`` as a request body whose upload is shown on stderr (a bar on a terminal, a
    line at the start and the end otherwise; nothing when ``quiet``)."""
    from aiorun.cli.progress import Transfer, file_size, reading, stderr_printer
    return reading(src, Transfer(stderr_printer(quiet), ident, "Uploading", "Uploaded",
                                 file_size(src)))


# ------------------------------------------------------------------ verbs

@verb("images", "[REPOSITORY[:TAG]]", "List images",
      Option("-a --all", BOOL, "Show all images"),
      Option("-q --quiet", BOOL, "Only show image IDs"),
      Option("--no-trunc", BOOL, "Don't truncate output"),
      Option("--digests", BOOL, "Show digests"),
      Option("-f --filter", LIST, "Filter output based on conditions provided (KEY=VALUE)"),
      Option("--format", STR, "Format output using a Go template"))
def cmd_images(ctx: Any, args: Opts, argv: list[str]) -> int:
    need(argv, "images", 0, 1)
    wanted = filters(args.filter)
    if argv:
        wanted.setdefault("reference", []).append(argv[0])
    images = ctx.client().get("/images/json", filters=wanted or None, all=args.all or None)
    now = time.time()
    rows = []
    for im in images:
        tags = im.get("RepoTags") or []
        # RepoDigests: "repo@sha256:..."; a repository without a tag shows as "repo <none>"
        digests = dict(d.split("@", 1) for d in im.get("RepoDigests") or [] if "@" in d)
        tagged = {t.rpartition(":")[0] for t in tags}
        tags = tags + [f"{r}:<none>" for r in digests if r not in tagged]
        if not tags:
            tags = ["<none>:<none>"]
        for t in tags:
            repo, _, tag = t.rpartition(":")
            rows.append({"Repository": repo, "Tag": tag, "ID": _short(im["Id"], args.no_trunc),
                         "CreatedSince": since(im.get("Created", 0), now),
                         "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC",
                                                    time.gmtime(im.get("Created", 0))),
                         "Size": human_size(im.get("Size", 0)),
                         "Digest": digests.get(repo, "<none>"),
                         "Containers": "N/A"})
    if args.quiet:
        seen: list[str] = []
        for r in rows:
            if r["ID"] not in seen:
                seen.append(r["ID"])
        sys.stdout.write("".join(f"{i}\n" for i in seen))
        return 0
    table = IMAGES_TABLE.replace("\t{{.ID}}", "\t{{.Digest}}\t{{.ID}}") if args.digests \
        else IMAGES_TABLE
    sys.stdout.write(_render(args.format or table, rows, IMAGES_HEADERS))
    return 0


@verb("import", "file|- [REPOSITORY[:TAG]]",
      "Import the contents from a tarball to create a filesystem image",
      Option("-c --change", LIST, "Apply Dockerfile instruction to the created image"),
      Option("-m --message", STR, "Set commit message for imported image", default=""),
      Option("--platform", STR, "Set platform (accepted)"))
def cmd_import(ctx: Any, args: Opts, argv: list[str]) -> int:
    need(argv, "import", 1, 2)
    file, reference = argv[0], (argv[1] if len(argv) > 1 else None)
    if file == "-":
        src = sys.stdin.buffer
    elif "://" in file:
        err("aiorun: importing from a URL is not supported; download it and import the file")
        return 1
    else:
        try:
            src = open(file, "rb")
        except OSError as exc:
            err(f"open {file}: {exc.strerror.lower() if exc.strerror else exc}")
            return 1
    query = {"fromSrc": "-", "repo": reference or None, "message": args.message or None,
             "changes": args.change or None}
    body = _uploading(src, "stdin" if file == "-" else os.path.basename(file), quiet=False)
    resp = ctx.client().request("POST", "/images/create", query, body=body)
    try:
        return _print_json_stream(resp)
    finally:
        resp.close()


@verb("tag", "SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]",
      "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE")
def cmd_tag(ctx: Any, args: Opts, argv: list[str]) -> int:
    need(argv, "tag", 2, 2)
    from aiorun.images.reference import parse
    ref = parse(argv[1])
    r = ctx.client().request("POST", f"/images/{argv[0]}/tag",
                             {"repo": ref.repo, "tag": ref.tag or "latest"})
    r.read()
    r.close()
    return 0


@verb("rmi", "IMAGE [IMAGE...]", "Remove one or more images",
      Option("-f --force", BOOL, "Force removal of the image"),
      Option("--no-prune", BOOL, "Do not delete untagged parents"))
def cmd_rmi(ctx: Any, args: Opts, names: list[str]) -> int:
    need(names, "rmi", 1)
    client = ctx.client()
    code = 0
    for name in names:
        try:
            out = client.delete(f"/images/{name}", force=args.force or None,
                                noprune=args.no_prune or None)
        except ApiError as exc:
            err(f"Error response from daemon: {exc.message}")
            code = 1
            continue
        for entry in out or []:
            for k, v in entry.items():
                print(f"{k}: {v}")
    return code


@verb("history", "IMAGE", "Show the history of an image",
      Option("-H --human", STR, "Print sizes and dates in human readable format",
             default="true", metavar="bool"),
      Option("-q --quiet", BOOL, "Only show image IDs"),
      Option("--no-trunc", BOOL, "Don't truncate output"),
      Option("--format", STR, "Format output using a Go template"))
def cmd_history(ctx: Any, args: Opts, argv: list[str]) -> int:
    need(argv, "history", 1, 1)
    human = args.human.lower() not in ("false", "0")
    rows = ctx.client().get(f"/images/{argv[0]}/history")
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


@verb("save", "IMAGE [IMAGE...]",
      "Save one or more images to a tar archive (streamed to STDOUT by default)",
      Option("-o --output", STR, "Write to a file, instead of STDOUT"))
def cmd_save(ctx: Any, args: Opts, images: list[str]) -> int:
    need(images, "save", 1)
    if not args.output and sys.stdout.isatty():
        err("aiorun: Cowardly refusing to save to a terminal. Use the -o flag or redirect")
        return 1
    client = ctx.client()
    if len(images) == 1:
        resp = client.request("GET", f"/images/{images[0]}/get")
    else:
        resp = client.request("GET", "/images/get", {"names": images})
    tmp = None
    try:
        if args.output:
            tmp = f"{args.output}.aiorun-part-{os.getpid()}"
            out: Any = open(tmp, "wb")
        else:
            out = sys.stdout.buffer
        from aiorun.cli.progress import Transfer, stderr_printer
        transfer = Transfer(stderr_printer(), os.path.basename(args.output) if args.output
                            else "stdout", "Saving", "Saved")
        try:
            for chunk in resp.iter_chunks():
                out.write(chunk)
                transfer.advance(len(chunk))
            out.flush()
            transfer.finish()
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


@verb("load", "", "Load an image from a tar archive or STDIN",
      Option("-i --input", STR, "Read from tar archive file, instead of STDIN"),
      Option("-q --quiet", BOOL, "Suppress the load output"))
def cmd_load(ctx: Any, args: Opts, argv: list[str]) -> int:
    need(argv, "load", 0, 0)
    src: Any
    if args.input:
        try:
            src = open(args.input, "rb")
        except OSError as exc:
            err(f"open {args.input}: {exc.strerror.lower() if exc.strerror else exc}")
            return 1
    else:
        if sys.stdin.isatty():
            err("aiorun: requested load from stdin, but stdin is empty")
            return 1
        src = sys.stdin.buffer
    body = _uploading(src, os.path.basename(args.input) if args.input else "stdin",
                      quiet=bool(args.quiet))
    resp = ctx.client().request("POST", "/images/load", {"quiet": args.quiet or None}, body=body)
    try:
        return _print_json_stream(resp, quiet=False)
    finally:
        resp.close()


@verb("image inspect", "IMAGE [IMAGE...]", "Display detailed information on one or more images",
      Option("-f --format", STR, "Format output using a Go template"))
def cmd_image_inspect(ctx: Any, args: Opts, names: list[str]) -> int:
    need(names, "image inspect", 1)
    client = ctx.client()
    found, code = [], 0
    for name in names:
        try:
            found.append(client.get(f"/images/{name}/json"))
        except ApiError as exc:
            if exc.status != 404:
                raise
            err(f"Error: No such image: {name}")
            code = 1
    if args.format:
        from aiorun.core.templates import render
        fmt = args.format.replace("\\t", "\t").replace("\\n", "\n")
        for obj in found:
            print(render(fmt, obj))
    else:
        print(json.dumps(found, indent=4))
    return code


@verb("image prune", "", "Remove unused images",
      Option("-a --all", BOOL, "Remove all unused images, not just dangling ones"),
      Option("-f --force", BOOL, "Do not prompt for confirmation"),
      Option("--filter", LIST, "Provide filter values (e.g. 'until=<timestamp>')"))
def cmd_image_prune(ctx: Any, args: Opts, argv: list[str]) -> int:
    need(argv, "image prune", 0, 0)
    wanted = filters(args.filter)
    wanted["dangling"] = ["false" if args.all else "true"]
    out = ctx.client().post("/images/prune", None, filters=wanted)
    deleted = out.get("ImagesDeleted") or []
    if deleted:
        print("Deleted Images:")
        for entry in deleted:
            for k, v in entry.items():
                print(f"{k.lower()}: {v}")
        print()
    print(f"Total reclaimed space: {human_size(out.get('SpaceReclaimed') or 0)}")
    return 0


def image_group() -> Group:
    """``aiorun image SUBCOMMAND``."""
    subs = {"history": cmd_history, "import": cmd_import, "inspect": cmd_image_inspect,
            "load": cmd_load, "ls": cmd_images, "prune": cmd_image_prune, "rm": cmd_rmi,
            "save": cmd_save, "tag": cmd_tag}
    subs = {name: v if v.command.name == f"image {name}" else v.renamed(f"image {name}")
            for name, v in subs.items()}
    return Group("image", "Manage images", subs, aliases={"list": "ls", "remove": "rm"})


def cmd_image(ctx: Any, argv: list[str]) -> int:
    return image_group()(ctx, argv)

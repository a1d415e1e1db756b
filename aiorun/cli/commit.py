"""``aiorun commit [-m MSG] [-a AUTHOR] [-c CHANGE]... [-p|--pause=false] CONTAINER [REPO[:TAG]]``"""

from __future__ import annotations

import argparse


def cmd_commit(ctx, argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="aiorun commit",
                                description="Create a new image from a container's changes")
    p.add_argument("-m", "--message", default="")
    p.add_argument("-a", "--author", default="")
    p.add_argument("-c", "--change", action="append", default=[],
                   help="apply a Dockerfile instruction (CMD ENTRYPOINT ENV EXPOSE LABEL "
                        "USER VOLUME WORKDIR STOPSIGNAL)")
    p.add_argument("-p", "--pause", action="store_true", default=True,
                   help="pause the container during commit (default; --pause=false not to)")
    p.add_argument("--no-pause", dest="pause", action="store_false", help=argparse.SUPPRESS)
    p.add_argument("container")
    p.add_argument("ref", nargs="?")
    # docker's boolean flag syntax: --pause=false / -p=false (a bare -p never eats an argument)
    argv = ["--no-pause" if x.lower() in ("--pause=false", "-p=false", "--pause=0", "-p=0")
            else "--pause" if x.lower() in ("--pause=true", "-p=true", "--pause=1", "-p=1")
            else x for x in argv]
    a = p.parse_args(argv)
    query: dict[str, object] = {"container": a.container, "comment": a.message or None,
                                "author": a.author or None,
                                "pause": bool(a.pause)}
    if a.ref:
        # split REPO[:TAG]: a ':' after the last '/' is the tag (a registry port is not)
        repo, tag = a.ref, None
        last = a.ref.rpartition("/")[2]
        if ":" in last:
            repo, _, tag = a.ref.rpartition(":")
        query["repo"], query["tag"] = repo, tag
    if a.change:
        # the API takes `changes` repeated (docker CLI) or newline-separated (this client)
        query["changes"] = "\n".join(a.change)
    res = ctx.client().post("/commit", None, **query)
    print(res["Id"])
    return 0

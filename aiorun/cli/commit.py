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
    p.add_argument("-p", "--pause", nargs="?", const="true", default="true",
                   help="pause the container during commit (default true)")
    p.add_argument("container")
    p.add_argument("ref", nargs="?")
    a = p.parse_args(argv)
    query: dict[str, object] = {"container": a.container, "comment": a.message or None,
                                "author": a.author or None,
                                "pause": a.pause.lower() not in ("false", "0", "no")}
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

"""``aiorun commit [-m MSG] [-a AUTHOR] [-c CHANGE]... [-p|--pause=false] CONTAINER [REPO[:TAG]]``"""

from __future__ import annotations

from typing import Any

from aiorun.cli.options import BOOL, LIST, STR, Opts, Option, need, verb


@verb("commit", "CONTAINER [REPOSITORY[:TAG]]", "Create a new image from a container's changes",
      Option("-m --message", STR, "Commit message", default=""),
      Option("-a --author", STR, "Author (e.g. \"John Hannibal Smith <hannibal@a-team.com>\")",
             default=""),
      Option("-c --change", LIST, "Apply a Dockerfile instruction (CMD ENTRYPOINT ENV EXPOSE "
             "LABEL USER VOLUME WORKDIR STOPSIGNAL)"),
      Option("-p --pause", BOOL, "Pause the container during commit (default; --pause=false "
             "not to)", default=True),
      Option("--no-pause", BOOL, "Do not pause the container", hidden=True))
def cmd_commit(ctx: Any, a: Opts, args: list[str]) -> int:
    need(args, "commit", 1, 2)
    container, ref = args[0], (args[1] if len(args) > 1 else None)
    query: dict[str, object] = {"container": container, "comment": a.message or None,
                                "author": a.author or None,
                                "pause": bool(a.pause) and not a.no_pause}
    if ref:
        # split REPO[:TAG]: a ':' after the last '/' is the tag (a registry port is not)
        repo, tag = ref, None
        last = ref.rpartition("/")[2]
        if ":" in last:
            repo, _, tag = ref.rpartition(":")
        query["repo"], query["tag"] = repo, tag
    if a.change:
        # the API takes `changes` repeated (docker CLI) or newline-separated (this client)
        query["changes"] = "\n".join(a.change)
    res = ctx.client().post("/commit", None, **query)
    print(res["Id"])
    return 0

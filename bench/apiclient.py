"""Docker-Engine-API calls the bench makes, shared by aiorun and dockerd (same shapes).

Uses ``aiorun.api.client.Client`` (a raw-socket HTTP/1.1 client: one request per
connection) so the client side costs the same for both daemons.
"""

from __future__ import annotations

from typing import Any


def make_client(socket_path, timeout: float = 60.0):
    """aiorun's client with a socket timeout, so a request that never gets an answer
    fails the one run instead of hanging the bench."""
    from aiorun.api.client import Client

    class TimeoutClient(Client):
        def connect(self):
            s = super().connect()
            s.settimeout(timeout)
            return s

    return TimeoutClient(socket_path)


def call(client, method: str, path: str, body: Any = None, **query: Any) -> Any:
    """One request; the JSON body or None. A 204/304 (or an empty body) is read as no
    body: ``Client.get/post/delete`` read a length-less 204 "until close", which hangs on a
    keep-alive server such as dockerd."""
    r = client.request(method, path, query or None, body)
    try:
        if r.status in (204, 304) or r.headers.get("content-length") == "0":
            return None
        if "content-length" not in r.headers and \
                "chunked" not in r.headers.get("transfer-encoding", "").lower():
            return None
        return r.json()
    finally:
        r.close()


def _create_body(image: str, cmd: list[str], network: str) -> dict[str, Any]:
    return {"Image": image, "Cmd": cmd, "AttachStdout": False, "AttachStderr": False,
            "HostConfig": {"NetworkMode": "default" if network == "bridge" else network}}


def api_run_rm(client, image: str, cmd: list[str], network: str) -> dict[str, int]:
    """create + start + wait + delete: ``docker run --rm`` without a CLI process.

    Returns the time to running (``create+start``, ns) as a sub-timing for the report;
    raises on a non-zero exit code (a start that failed inside)."""
    import time
    t0 = time.perf_counter_ns()
    cid = call(client, "POST", "/containers/create", _create_body(image, cmd, network))["Id"]
    try:
        call(client, "POST", f"/containers/{cid}/start")
        t1 = time.perf_counter_ns()
        code = call(client, "POST", f"/containers/{cid}/wait")["StatusCode"]
    finally:
        call(client, "DELETE", f"/containers/{cid}", force=True)
    if code != 0:
        raise RuntimeError(f"{cmd} exited {code}")
    return {"create+start": t1 - t0}


def api_start_detached(client, name: str, image: str, cmd: list[str], network: str) -> str:
    cid = call(client, "POST", "/containers/create", _create_body(image, cmd, network),
               name=name)["Id"]
    call(client, "POST", f"/containers/{cid}/start")
    return cid


def api_running(client, names: list[str]) -> int:
    want = set(names)
    n = 0
    for c in call(client, "GET", "/containers/json") or []:
        if any(x.lstrip("/") in want for x in c.get("Names") or []):
            n += 1
    return n


def api_remove(client, name: str) -> None:
    call(client, "DELETE", f"/containers/{name}", force=True)


def api_remove_all(client) -> None:
    for c in call(client, "GET", "/containers/json", all=True) or []:
        call(client, "DELETE", f"/containers/{c['Id']}", force=True)


def api_commit_big(client, image: str, mb: int) -> dict:
    """Run a container that writes ``mb`` MB into its rw layer, then time ``POST /commit``."""
    cid = call(client, "POST", "/containers/create", _create_body(
        image, ["dd", "if=/dev/zero", "of=/big", "bs=1048576", f"count={mb}"], "none"))["Id"]
    try:
        call(client, "POST", f"/containers/{cid}/start")
        call(client, "POST", f"/containers/{cid}/wait")
        import time
        t0 = time.perf_counter_ns()
        img = call(client, "POST", "/commit", container=cid, repo="bench-big", tag="latest")
        ms = (time.perf_counter_ns() - t0) / 1e6
    finally:
        call(client, "DELETE", f"/containers/{cid}", force=True)
    try:
        call(client, "DELETE", "/images/bench-big:latest", force=True)
    except Exception:
        pass
    return {"commit_ms": round(ms, 1), "image": (img or {}).get("Id", "")[:19]}


class ApiDriven:
    """The concurrency/commit side of an engine driven over a Docker-shaped API socket
    (aiorun and dockerd alike). Needs ``self.client`` and ``self.api_image``."""

    client: Any
    api_image: str

    def start_detached(self, ids: list[str], parallel: int) -> list[str | None]:
        from bench.base import parallel_map
        return parallel_map(lambda cid: api_start_detached(self.client, cid, self.api_image,
                                                          ["sleep", "100000"], "bridge"),
                            ids, parallel)

    def running(self, ids: list[str]) -> int:
        return api_running(self.client, ids)

    def remove_detached(self, ids: list[str], parallel: int) -> list[str | None]:
        from bench.base import parallel_map
        return parallel_map(lambda cid: api_remove(self.client, cid), ids, parallel)

    def commit_big(self, mb: int) -> dict:
        return api_commit_big(self.client, self.api_image, mb)

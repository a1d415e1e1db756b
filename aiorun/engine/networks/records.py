"""The network manager's records and their files under ``paths.networks``::

    <id>.json              a network (Docker's inspect shape minus Containers)
    endpoints/<cid>.json   a container's endpoints + its name/hostname/aliases
    connected/<cid>.json   networks joined with ``network connect`` (rejoined at every start)

:class:`Records` holds the three tables in memory and writes each change through at once
(atomic file writes), so a daemon restart finds what the last one knew.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from pathlib import Path
from typing import Any

from aiorun.core.timefmt import now_rfc3339nano
from aiorun.core.ports import PortMapping
from aiorun.drivers.network import Endpoint, NetworkConfig
from aiorun.errors import AiorunError, InvalidArgument, NotFound
from aiorun.net.ipam import write_json_atomic

log = logging.getLogger("aiorun.networks")

#: The networks Docker always has, by network name → the driver that serves it. These are
#: names of the Docker API, not driver behaviour: what each does comes from its driver.
PREDEFINED: dict[str, str] = {"bridge": "bridge", "host": "host", "none": "none"}
#: The network of ``NetworkMode`` "" / "default", and the driver of ``network create``
#: without ``--driver`` (Docker's defaults).
DEFAULT_NETWORK = "bridge"
DEFAULT_DRIVER = "bridge"
NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")


class Forbidden(AiorunError):
    """A network operation Docker refuses with 403 (removing a predefined network, ...)."""
    status = 403


def now() -> str:
    """A network's ``Created``: :func:`aiorun.core.timefmt.now_rfc3339nano`."""
    return now_rfc3339nano()


def _ep_to_json(ep: Endpoint) -> dict[str, Any]:
    return dataclasses.asdict(ep)


def _ep_from_json(d: dict[str, Any]) -> Endpoint:
    d = dict(d)
    d["ports"] = [PortMapping(**p) for p in d.get("ports") or ()]
    return Endpoint(**d)


@dataclasses.dataclass
class Network:
    config: NetworkConfig
    created: str
    labels: dict[str, str]
    attachable: bool = False

    @property
    def predefined(self) -> bool:
        return self.config.name in PREDEFINED

    def to_json(self) -> dict[str, Any]:
        return {"config": dataclasses.asdict(self.config), "created": self.created,
                "labels": self.labels, "attachable": self.attachable}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Network":
        return cls(NetworkConfig(**d["config"]), d.get("created", ""), d.get("labels") or {},
                   bool(d.get("attachable")))


@dataclasses.dataclass
class Member:
    """A container's presence on the networks: its endpoints and how peers call it."""
    container_id: str
    name: str = ""
    hostname: str = ""
    netns_path: str = ""
    aliases: dict[str, list[str]] = dataclasses.field(default_factory=dict)  # net id → aliases
    endpoints: list[Endpoint] = dataclasses.field(default_factory=list)
    exposed: list[str] = dataclasses.field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"container_id": self.container_id, "name": self.name, "hostname": self.hostname,
                "netns_path": self.netns_path, "aliases": self.aliases, "exposed": self.exposed,
                "endpoints": [_ep_to_json(e) for e in self.endpoints]}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Member":
        return cls(d["container_id"], d.get("name", ""), d.get("hostname", ""),
                   d.get("netns_path", ""), d.get("aliases") or {},
                   [_ep_from_json(e) for e in d.get("endpoints") or ()], d.get("exposed") or [])


class Records:
    """Networks, members (containers with endpoints) and ``network connect`` records."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.networks: dict[str, Network] = {}      # network id → network
        self.members: dict[str, Member] = {}        # container id → its endpoints
        #: container id → networks joined with `network connect` ({"network", "aliases", "ip"})
        self.connected: dict[str, list[dict[str, Any]]] = {}

    def load(self) -> None:
        """Read every file; an unreadable one is logged and skipped."""
        (self.dir / "endpoints").mkdir(parents=True, exist_ok=True)
        for f in self.dir.glob("*.json"):
            try:
                n = Network.from_json(json.loads(f.read_text()))
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("ignoring unreadable network file %s: %s", f, exc)
                continue
            self.networks[n.config.id] = n
        for f in (self.dir / "endpoints").glob("*.json"):
            try:
                m = Member.from_json(json.loads(f.read_text()))
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("ignoring unreadable endpoint file %s: %s", f, exc)
                continue
            self.members[m.container_id] = m
        for f in (self.dir / "connected").glob("*.json"):
            try:
                self.connected[f.stem] = list(json.loads(f.read_text()))
            except (ValueError, TypeError) as exc:
                log.warning("ignoring unreadable connection file %s: %s", f, exc)

    # -- lookup ------------------------------------------------------------------------------
    def get(self, ref: str) -> Network:
        """By exact name, full id, or unique id prefix."""
        if not ref:
            raise InvalidArgument("network name or id must not be empty")
        for n in self.networks.values():
            if n.config.name == ref or n.config.id == ref:
                return n
        hits = [n for n in self.networks.values() if n.config.id.startswith(ref)]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise InvalidArgument(f"network id prefix {ref!r} is ambiguous")
        raise NotFound(f"network {ref} not found")

    def containers_on(self, net_id: str) -> list[Member]:
        return [m for m in self.members.values()
                if any(e.network_id == net_id for e in m.endpoints)]

    def peers(self, net_id: str) -> list[tuple[str, Member, Endpoint]]:
        """(container id, member, endpoint) of every addressed endpoint on ``net_id``."""
        out = []
        for m in self.members.values():
            for ep in m.endpoints:
                if ep.network_id == net_id and ep.ip_address:
                    out.append((m.container_id, m, ep))
        return out

    # -- writes ------------------------------------------------------------------------------
    def save_network(self, n: Network) -> None:
        self.networks[n.config.id] = n
        write_json_atomic(self.dir / f"{n.config.id}.json", n.to_json())

    def delete_network(self, nid: str) -> None:
        self.networks.pop(nid, None)
        (self.dir / f"{nid}.json").unlink(missing_ok=True)

    def save_member(self, m: Member) -> None:
        """Write a member; one without endpoints is forgotten instead."""
        if not m.endpoints:
            self.forget_member(m.container_id)
            return
        self.members[m.container_id] = m
        write_json_atomic(self.dir / "endpoints" / f"{m.container_id}.json", m.to_json())

    def forget_member(self, cid: str) -> None:
        self.members.pop(cid, None)
        self.drop_member_file(cid)

    def drop_member_file(self, cid: str) -> None:
        """Only the file (thread-safe: the table is the event loop's)."""
        (self.dir / "endpoints" / f"{cid}.json").unlink(missing_ok=True)

    def connected_path(self, cid: str) -> Path:
        return self.dir / "connected" / f"{cid}.json"

    def save_connected(self, cid: str) -> None:
        """Write ``connected[cid]``; an empty list removes the record and its file."""
        conns = self.connected.get(cid)
        p = self.connected_path(cid)
        if not conns:
            self.connected.pop(cid, None)
            p.unlink(missing_ok=True)
            return
        p.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(p, conns)

    def forget_connected(self, cid: str) -> None:
        self.connected.pop(cid, None)
        self.connected_path(cid).unlink(missing_ok=True)

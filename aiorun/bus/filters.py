"""Event filters with Docker's semantics.

Values of one key are OR-ed, different keys are AND-ed. Keys:

``type``       container | image | volume | network | daemon | plugin
``event``      the action (``action`` is accepted as a synonym); ``exec_create`` also matches
               Docker's ``exec_create: <cmd>`` spelling
``container``  container id (full or a prefix of at least 12 chars) or name; matches container
               events and network/volume events whose ``container`` attribute names it
``image``      image reference or id: container events' ``image`` attribute, image events' id
               or ``name`` attribute
``label``      ``key`` or ``key=value`` among the attributes
``network``/``volume``/``daemon``  id or ``name`` attribute of events of that type
"""

from __future__ import annotations

from typing import Iterable, Mapping

from aiorun.core.events import Event
from aiorun.errors import InvalidArgument

KEYS = ("type", "event", "action", "container", "image", "label", "network", "volume",
        "daemon", "scope", "plugin", "node", "service", "config", "secret")


def _id_match(want: str, actor_id: str, name: str | None) -> bool:
    if want == actor_id or (name is not None and want in (name, "/" + name)):
        return True
    w = want.removeprefix("sha256:")
    a = actor_id.removeprefix("sha256:")
    return len(w) >= 12 and a.startswith(w)


def _image_match(want: str, value: str) -> bool:
    if not value:
        return False
    if want == value or _id_match(want, value, None):
        return True
    # "busybox" matches "busybox:latest" and "docker.io/library/busybox:latest"
    for v in (value, value.removeprefix("docker.io/library/"), value.removeprefix("docker.io/")):
        if v == want or (":" not in want.rsplit("/", 1)[-1] and v == want + ":latest"):
            return True
    return False


class EventFilter:
    """A compiled filter; ``EventFilter({})`` matches everything."""

    def __init__(self, filters: Mapping[str, Iterable[str]] | None = None) -> None:
        self.f: dict[str, list[str]] = {}
        for k, vals in (filters or {}).items():
            if k not in KEYS:
                raise InvalidArgument(f"invalid filter {k!r} (valid: {', '.join(KEYS[:9])})")
            vals = [vals] if isinstance(vals, str) else list(vals)
            if k == "action":
                k = "event"
            self.f.setdefault(k, []).extend(vals)

    @classmethod
    def from_docker(cls, obj: object) -> "EventFilter":
        """Docker sends ``{"key": ["v"]}`` or the legacy ``{"key": {"v": true}}``."""
        if not obj:
            return cls()
        if not isinstance(obj, dict):
            raise InvalidArgument("filters must be a JSON object")
        out: dict[str, list[str]] = {}
        for k, v in obj.items():
            if isinstance(v, dict):
                out[k] = [x for x, on in v.items() if on]
            elif isinstance(v, list):
                out[k] = [str(x) for x in v]
            else:
                out[k] = [str(v)]
        return cls(out)

    @classmethod
    def from_pairs(cls, pairs: Iterable[str]) -> "EventFilter":
        """CLI ``--filter k=v`` strings."""
        out: dict[str, list[str]] = {}
        for p in pairs:
            k, sep, v = p.partition("=")
            if not sep:
                raise InvalidArgument(f"bad filter {p!r}: expected key=value")
            out.setdefault(k.strip(), []).append(v)
        return cls(out)

    def to_dict(self) -> dict[str, list[str]]:
        return {k: list(v) for k, v in self.f.items()}

    def __bool__(self) -> bool:
        return bool(self.f)

    def match(self, ev: Event) -> bool:
        for key, wants in self.f.items():
            if not any(self._one(key, w, ev) for w in wants):
                return False
        return True

    @staticmethod
    def _one(key: str, want: str, ev: Event) -> bool:
        a = ev.attrs
        if key == "type":
            return ev.type == want
        if key == "event":
            return ev.action == want or ev.action.split(":", 1)[0] == want
        if key == "container":
            if ev.type == "container":
                return _id_match(want, ev.id, a.get("name"))
            c = a.get("container")
            return c is not None and _id_match(want, c, a.get("container_name"))
        if key == "image":
            if ev.type == "image":
                return _id_match(want, ev.id, None) or _image_match(want, a.get("name", ""))
            return ev.type == "container" and _image_match(want, a.get("image", ""))
        if key == "label":
            k, sep, v = want.partition("=")
            return k in a and (not sep or a[k] == v)
        if key in ("network", "volume", "daemon", "plugin", "config", "secret", "service",
                   "node"):
            return ev.type == key and _id_match(want, ev.id, a.get("name"))
        if key == "scope":
            return want == "local"
        return False

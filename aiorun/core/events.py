"""The event model shared by the engine, the bus and every frontend.

An event says that something changed: ``type`` (container, image, volume, network, daemon),
``action`` (create, start, die, ...), the actor's id and string attributes. The bus stamps each
event with a daemon-wide sequence number (no gaps) and a nanosecond wall-clock time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Event:
    seq: int
    time_ns: int
    type: str
    action: str
    id: str
    attrs: dict[str, str] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        return {"seq": self.seq, "time_ns": self.time_ns, "type": self.type,
                "action": self.action, "id": self.id, "attrs": dict(self.attrs)}

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> "Event":
        return cls(int(d["seq"]), int(d["time_ns"]), str(d["type"]), str(d["action"]),
                   str(d["id"]), {str(k): str(v) for k, v in (d.get("attrs") or {}).items()})

    def to_docker(self) -> dict[str, Any]:
        """The JSON object Docker's ``GET /events`` streams for this event."""
        attrs = dict(self.attrs)
        out: dict[str, Any] = {
            "Type": self.type,
            "Action": self.action,
            "Actor": {"ID": self.id, "Attributes": attrs},
            "scope": "local",
            "time": self.time_ns // 1_000_000_000,
            "timeNano": self.time_ns,
        }
        if self.type == "container":  # legacy fields docker still sends
            out["status"] = self.action
            out["id"] = self.id
            if "image" in attrs:
                out["from"] = attrs["image"]
        return out

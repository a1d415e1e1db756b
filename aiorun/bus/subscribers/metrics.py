"""The metrics subscriber: Prometheus text exposition (format 0.0.4) over plain HTTP.

Served at ``http://HOST:PORT/metrics`` (default ``127.0.0.1:9323``, loopback: put a proxy in
front to expose it). Metrics, all derived from events:

=========================================  =========  =========================================
``aiorun_containers{state}``               gauge      containers by state (created, running,
                                                      paused, exited)
``aiorun_container_starts_total``          counter    container ``start`` events
``aiorun_container_exits_total{code}``     counter    ``die`` events by exit code
``aiorun_container_start_latency_seconds`` histogram  create → first start (or ``latency_ms``
                                                      attribute of the start event)
``aiorun_exec_total``                      counter    ``exec_start`` events
``aiorun_image_builds_total``              counter    image ``build`` events
``aiorun_events_total{type,action}``       counter    every event
``aiorun_events_lost_total``               counter    events reported lost to this subscriber
``aiorun_last_event_seq``                  gauge      the last seq seen
=========================================  =========  =========================================

The same facts are also rendered under dockerd's names, so what scrapes ``dockerd
--metrics-addr`` reads aiorun too: ``engine_daemon_engine_info`` (when given),
``engine_daemon_container_states_containers{state=running|paused|stopped}``,
``engine_daemon_container_actions_seconds{action="start"}`` and
``engine_daemon_events_total``.

At start it replays the journal so the gauges describe containers made before it started.
``aiorun serve --metrics-addr HOST:PORT`` runs it in the daemon (:func:`serve_metrics`).
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from aiorun.bus.codec import Lost
from aiorun.bus.subscribers.base import Subscriber
from aiorun.core.events import Event
from aiorun.errors import InvalidArgument

if TYPE_CHECKING:
    from aiorun.bus.bus import EventBus

log = logging.getLogger(__name__)

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
STATES = ("created", "running", "paused", "exited")
_NEXT_STATE = {"create": "created", "start": "running", "unpause": "running",
               "pause": "paused", "die": "exited"}


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise InvalidArgument(f"invalid listen address {value!r}: want HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Metrics:
    """Pure state: feed events with ``handle``, read ``render()``."""

    def __init__(self, engine_info: dict[str, str] | None = None) -> None:
        #: labels of dockerd's ``engine_daemon_engine_info`` (version, kernel, ...)
        self.engine_info = dict(engine_info or {})
        self.state: dict[str, str] = {}
        self.created_at: dict[str, int] = {}
        self.starts = 0
        self.exits: Counter[str] = Counter()
        self.latency_counts = [0] * len(BUCKETS)
        self.latency_sum = 0.0
        self.latency_n = 0
        self.execs = 0
        self.builds = 0
        self.events: Counter[tuple[str, str]] = Counter()
        self.lost = 0
        self.last_seq = 0

    def handle(self, item: Any) -> None:
        if isinstance(item, Lost):
            self.lost += item.count
            return
        if not isinstance(item, Event):
            return
        ev = item
        self.last_seq = max(self.last_seq, ev.seq)
        action = ev.action.split(":", 1)[0]
        self.events[(ev.type, action)] += 1
        if ev.type == "container":
            if action == "create":
                self.created_at[ev.id] = ev.time_ns
            elif action == "start":
                self.starts += 1
                self._latency(ev)
            elif action == "die":
                self.exits[ev.attrs.get("exitCode", ev.attrs.get("exit_code", "unknown"))] += 1
            elif action == "exec_start":
                self.execs += 1
            if action == "destroy":
                self.state.pop(ev.id, None)
                self.created_at.pop(ev.id, None)
            elif action in _NEXT_STATE:
                self.state[ev.id] = _NEXT_STATE[action]
        elif ev.type == "image" and action == "build":
            self.builds += 1

    def _latency(self, ev: Event) -> None:
        seconds: float | None = None
        if "latency_ms" in ev.attrs:
            try:
                seconds = float(ev.attrs["latency_ms"]) / 1000
            except ValueError:
                seconds = None
        elif ev.id in self.created_at:
            seconds = max(0.0, (ev.time_ns - self.created_at.pop(ev.id)) / 1e9)
        if seconds is None:
            return
        self.latency_n += 1
        self.latency_sum += seconds
        for i, b in enumerate(BUCKETS):
            if seconds <= b:
                self.latency_counts[i] += 1

    def render(self) -> str:
        out: list[str] = []

        def head(name: str, kind: str, help_: str) -> None:
            out.append(f"# HELP {name} {help_}")
            out.append(f"# TYPE {name} {kind}")

        by_state = Counter(self.state.values())
        head("aiorun_containers", "gauge", "Containers by state.")
        for s in STATES:
            out.append(f'aiorun_containers{{state="{s}"}} {by_state.get(s, 0)}')
        head("aiorun_container_starts_total", "counter", "Container starts.")
        out.append(f"aiorun_container_starts_total {self.starts}")
        head("aiorun_container_exits_total", "counter", "Container exits by exit code.")
        for code, n in sorted(self.exits.items()):
            out.append(f'aiorun_container_exits_total{{code="{_esc(code)}"}} {n}')
        head("aiorun_container_start_latency_seconds", "histogram",
             "Time from container create to its first start.")
        for b, n in zip(BUCKETS, self.latency_counts):
            out.append(f'aiorun_container_start_latency_seconds_bucket{{le="{b}"}} {n}')
        out.append(f'aiorun_container_start_latency_seconds_bucket{{le="+Inf"}} '
                   f"{self.latency_n}")
        out.append(f"aiorun_container_start_latency_seconds_sum {self.latency_sum:.6f}")
        out.append(f"aiorun_container_start_latency_seconds_count {self.latency_n}")
        head("aiorun_exec_total", "counter", "Exec sessions started.")
        out.append(f"aiorun_exec_total {self.execs}")
        head("aiorun_image_builds_total", "counter", "Image builds.")
        out.append(f"aiorun_image_builds_total {self.builds}")
        head("aiorun_events_total", "counter", "Events seen, by type and action.")
        for (t, a), n in sorted(self.events.items()):
            out.append(f'aiorun_events_total{{type="{_esc(t)}",action="{_esc(a)}"}} {n}')
        head("aiorun_events_lost_total", "counter", "Events reported lost to this subscriber.")
        out.append(f"aiorun_events_lost_total {self.lost}")
        head("aiorun_last_event_seq", "gauge", "Sequence number of the last event seen.")
        out.append(f"aiorun_last_event_seq {self.last_seq}")
        self._render_dockerd(out, by_state)
        return "\n".join(out) + "\n"

    def _render_dockerd(self, out: list[str], by_state: Counter[str]) -> None:
        """The same facts under dockerd's names (``--metrics-addr`` scrapers and dashboards
        made for Docker read these): ``engine_daemon_*``."""
        if self.engine_info:
            labels = ",".join(f'{k}="{_esc(v)}"' for k, v in sorted(self.engine_info.items()))
            out.append("# HELP engine_daemon_engine_info The information related to the engine "
                       "and the OS it is running on")
            out.append("# TYPE engine_daemon_engine_info gauge")
            out.append(f"engine_daemon_engine_info{{{labels}}} 1")
        out.append("# HELP engine_daemon_container_states_containers The count of containers "
                   "in various states")
        out.append("# TYPE engine_daemon_container_states_containers gauge")
        stopped = by_state.get("created", 0) + by_state.get("exited", 0)
        for state, n in (("paused", by_state.get("paused", 0)),
                         ("running", by_state.get("running", 0)), ("stopped", stopped)):
            out.append(f'engine_daemon_container_states_containers{{state="{state}"}} {n}')
        out.append("# HELP engine_daemon_container_actions_seconds The number of seconds it "
                   "takes to process each container action")
        out.append("# TYPE engine_daemon_container_actions_seconds histogram")
        for b, n in zip(BUCKETS, self.latency_counts):
            out.append(f'engine_daemon_container_actions_seconds_bucket{{action="start",'
                       f'le="{b}"}} {n}')
        out.append(f'engine_daemon_container_actions_seconds_bucket{{action="start",'
                   f'le="+Inf"}} {self.latency_n}')
        out.append(f'engine_daemon_container_actions_seconds_sum{{action="start"}} '
                   f"{self.latency_sum:.6f}")
        out.append(f'engine_daemon_container_actions_seconds_count{{action="start"}} '
                   f"{self.latency_n}")
        out.append("# HELP engine_daemon_events_total The number of events logged")
        out.append("# TYPE engine_daemon_events_total counter")
        out.append(f"engine_daemon_events_total {sum(self.events.values())}")


async def _http(conn: anyio.abc.ByteStream, metrics: Metrics) -> None:
    async with conn:
        buf = b""
        try:
            with anyio.fail_after(10):
                while b"\r\n\r\n" not in buf and b"\n\n" not in buf and len(buf) < 16384:
                    buf += await conn.receive(4096)
        except (TimeoutError, anyio.EndOfStream, anyio.BrokenResourceError):
            return
        parts = buf.split(b"\r\n", 1)[0].split()
        method, target = (parts[0], parts[1]) if len(parts) >= 2 else (b"", b"")
        if method not in (b"GET", b"HEAD"):
            status, body, ctype = "405 Method Not Allowed", b"only GET\n", "text/plain"
        elif target.split(b"?")[0] in (b"/metrics", b"/"):
            status, body = "200 OK", metrics.render().encode()
            ctype = "text/plain; version=0.0.4; charset=utf-8"
        else:
            status, body, ctype = "404 Not Found", b"try /metrics\n", "text/plain"
        head = (f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                f"Connection: close\r\n\r\n").encode()
        try:
            await conn.send(head + (body if method != b"HEAD" else b""))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass


class MetricsSubscriber(Subscriber):
    def __init__(self, host: str = "127.0.0.1", port: int = 9323,
                 engine_info: dict[str, str] | None = None) -> None:
        self.host, self.port = host, port
        self.metrics = Metrics(engine_info)
        self.bound_port: int | None = None

    def handle(self, item: Event | Lost) -> None:
        self.metrics.handle(item)

    async def serve(self, *, task_status: anyio.abc.TaskStatus[Any] =
                    anyio.TASK_STATUS_IGNORED) -> None:
        """Serve ``/metrics`` until cancelled; ``task_status.started`` gets the bound port."""
        listener = await anyio.create_tcp_listener(local_host=self.host, local_port=self.port,
                                                   reuse_port=False)
        async with listener:
            self.bound_port = listener.extra(anyio.abc.SocketAttribute.local_port)
            log.info("metrics on http://%s:%d/metrics", self.host, self.bound_port)
            task_status.started(self.bound_port)
            await listener.serve(lambda c: _http(c, self.metrics))

    async def run_plugin(self, bus: EventBus, *, task_status: anyio.abc.TaskStatus[Any] =
                         anyio.TASK_STATUS_IGNORED) -> None:
        """In-daemon: rebuild from the journal, follow as a listener, serve HTTP."""
        pending: list[Event] = []
        replaying = True

        def on_event(ev: Event) -> None:
            if replaying:
                pending.append(ev)
            else:
                self.metrics.handle(ev)
        remove = bus.add_listener(on_event)
        try:
            upto = bus.last_seq

            def rebuild() -> None:
                for item in bus.replay(None, None, upto):
                    self.metrics.handle(item)
            await anyio.to_thread.run_sync(rebuild)
            # No await between these lines: the listener cannot interleave.
            replaying = False
            for ev in pending:
                if ev.seq > upto:
                    self.metrics.handle(ev)
            pending.clear()
            await self.serve(task_status=task_status)
        finally:
            remove()


async def serve_metrics(bus: EventBus, host: str, port: int,
                        engine_info: dict[str, str] | None = None, *,
                        task_status: anyio.abc.TaskStatus[Any] = anyio.TASK_STATUS_IGNORED
                        ) -> None:
    """``--metrics-addr``: a fresh subscriber per run (a supervised restart replays the
    journal again rather than counting twice); started once the port is bound."""
    sub = MetricsSubscriber(host, port, engine_info)
    try:
        await sub.run_plugin(bus, task_status=task_status)
    finally:
        sub.close()

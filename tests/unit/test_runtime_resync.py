"""After a reconnect the runtime client asks the new spawner about every container it was
waiting for (``Runtime._resync``). A delete that forgets one of them while the question is
in flight must not break the resync: its KeyError ended the daemon (seen in the fault
soak, issue 11). The spawner side is replaced by a scripted ``_request`` (the race is the
client's alone)."""

from __future__ import annotations

import anyio
import pytest

from aiorun.config import Paths
from aiorun.errors import NotFound
from aiorun.runtime.api import Runtime
from aiorun.runtime.ops import Op


@pytest.mark.anyio
async def test_resync_survives_a_delete_racing_it(tmp_path):
    rt = Runtime(Paths(tmp_path / "root", tmp_path / "run"))
    for cid in ("gone", "deleted-meanwhile", "exited"):
        rt._exit_events[cid] = anyio.Event()

    async def request(op: Op, **kw: object):
        if op is Op.HELLO:
            return {"pid": 1}
        assert op is Op.STATE
        if kw["id"] == "deleted-meanwhile":
            rt._forget("deleted-meanwhile")       # what delete() does while we await
            raise NotFound("no such container or exec in the runtime: deleted-meanwhile")
        if kw["id"] == "gone":
            raise NotFound("no such container or exec in the runtime: gone")
        return {"status": {"exit_code": 3, "oom_killed": False}}

    rt._request = request                        # type: ignore[method-assign]
    waiting = rt._exit_events["gone"]
    await rt._resync()
    assert waiting.is_set() and "gone" not in rt._exit_events   # its waiter wakes
    assert "deleted-meanwhile" not in rt._exit_events
    assert rt._exits["exited"].exit_code == 3 and rt._exit_events["exited"].is_set()

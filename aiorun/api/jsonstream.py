"""Docker's JSON message streams (pull, load): one JSON object per line.

A pull is answered only once its first message exists: that keeps Docker's error contract,
where an unknown image is an ordinary HTTP error with its status, and a failure later, once
the 200 is sent, a last ``{"error", "errorDetail"}`` line. A load answers 200 at once and
reports every failure as that last line (Docker's behaviour too).

:func:`reported` runs its work in a task group, so a generator made by it must be iterated
by one task from its first step to its last: pass it to :func:`respond` with
``wait_first=False`` (the response's writer runs all of it).
"""

from __future__ import annotations

import json
import logging
from typing import Any, AsyncGenerator, Awaitable, Callable

import anyio

from aiorun.api.http import Response
from aiorun.errors import AiorunError

log = logging.getLogger(__name__)

Message = dict[str, Any]
Report = Callable[[Message], Awaitable[None]]


def line(msg: Message) -> bytes:
    return json.dumps(msg).encode() + b"\r\n"


async def reported(work: Callable[[Report], Awaitable[list[Message]]]
                   ) -> AsyncGenerator[Message, None]:
    """The messages ``work(report)`` reports (each ``await report(msg)``, as it happens),
    then the messages it returns. Its error is raised where the next message would be."""
    send, recv = anyio.create_memory_object_stream[Any](16)
    result: list[Message] = []

    async def run() -> None:
        async with send:
            try:
                result.extend(await work(send.send))
            except Exception as exc:     # handed to the consumer, raised there
                await send.send(exc)

    failed: BaseException | None = None
    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        async with recv:
            async for item in recv:
                if isinstance(item, BaseException):
                    failed = item
                    break
                yield item
    if failed is not None:        # raised outside the task group: not wrapped in a group
        raise failed
    for msg in result:
        yield msg


async def respond(messages: AsyncGenerator[Message, None], what: str,
                  on_success: Callable[[], None] | None = None,
                  wait_first: bool = True) -> Response:
    """A 200 streaming ``messages``. With ``wait_first`` only once the first one exists (an
    error before it propagates: the route's HTTP error). ``on_success`` runs after the last
    message of a stream that ended without an error (an event, say)."""
    first: list[Message] = []
    if wait_first:
        try:
            first.append(await messages.__anext__())
        except StopAsyncIteration:
            await messages.aclose()
            return Response(200, b"")
        except BaseException:
            await messages.aclose()
            raise

    async def stream() -> AsyncGenerator[bytes, None]:
        try:
            for msg in first:
                yield line(msg)
            async for msg in messages:
                yield line(msg)
        except AiorunError as exc:
            yield line({"error": exc.message, "errorDetail": {"message": exc.message}})
        except Exception as exc:
            log.exception("%s failed", what)
            text = f"{type(exc).__name__}: {exc}"
            yield line({"error": text, "errorDetail": {"message": text}})
        else:
            if on_success is not None:
                on_success()
        finally:
            await messages.aclose()

    return Response(200, stream=stream())

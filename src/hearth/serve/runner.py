"""One generation request from admission to the last byte: wait for a fair slot, generate in a
thread, and stop everything the moment the client goes away.

Hand-written on asyncio + the ASGI `receive` channel: the client's disconnect is watched from
the first await (a request waiting in the queue leaves it) to the end of a stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from hearth.serve.errors import overloaded
from hearth.serve.pump import ThreadPump
from hearth.serve.scheduler import Overloaded
from hearth.serve.state import ServerState

T = TypeVar("T")

CLIENT_CLOSED = 499  # nginx's status for "client closed the request"; nobody receives it


class ClientGone(Exception):
    """The client disconnected; nothing more will be sent to it."""


class DisconnectWatch:
    """Watches the ASGI receive channel for `http.disconnect` (bodies are already read)."""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self.gone = asyncio.Event()
        self._callbacks: list[Callable[[], Any]] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> DisconnectWatch:
        self._task = asyncio.create_task(self._watch())
        return self

    def on_gone(self, callback: Callable[[], Any]) -> None:
        if self.gone.is_set():
            callback()
        else:
            self._callbacks.append(callback)

    async def _watch(self) -> None:
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self.gone.set()
                for callback in self._callbacks:
                    callback()
                return

    async def race(self, awaitable: Awaitable[T]) -> T:
        """The result of `awaitable`, or ClientGone (and `awaitable` cancelled) if the client
        leaves first."""
        work = asyncio.ensure_future(awaitable)
        gone = asyncio.create_task(self.gone.wait())
        try:
            done, _ = await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if work in done:
            return work.result()
        work.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await work
        raise ClientGone()

    def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()


class Generation:
    """A slot from the fair scheduler plus a ThreadPump running `make_items` in it."""

    def __init__(self, state: ServerState, receive: Receive, caller: str, model_id: str) -> None:
        self.state = state
        self.caller = caller
        self.model_id = model_id
        self.watch = DisconnectWatch(receive)
        self.started_at = time.perf_counter()
        self.first_token_at: float | None = None
        self.pump: ThreadPump[Any] | None = None

    async def start(self, make_items: Callable[[], Iterator[Any]]) -> ThreadPump[Any]:
        """Wait for a slot (429 at once when the queue is full), then start generating."""
        self.watch.start()
        try:
            lease = await self.watch.race(self.state.scheduler.acquire(self.caller, self.model_id))
        except Overloaded as full:
            self.watch.stop()
            raise overloaded(full.retry_after) from None
        except BaseException:
            self.watch.stop()
            raise
        try:
            self.pump = ThreadPump(make_items, on_finish=lease.release).start()
        except BaseException:
            lease.release()
            self.watch.stop()
            raise
        self.watch.on_gone(self.pump.cancel)
        return self.pump

    def note_first_token(self) -> None:
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()
            self.state.metrics.ttft.labels(self.model_id).observe(
                self.first_token_at - self.started_at
            )

    def note_usage(self, prompt_tokens: int, completion_tokens: int) -> None:
        self.state.metrics.record_generation(self.model_id, prompt_tokens, completion_tokens)

    def close(self) -> None:
        """The response is over (sent, failed or abandoned): stop generating, stop watching."""
        if self.pump is not None and not self.pump.finished.is_set():
            self.pump.cancel()
        if self.pump is not None and self.pump.cancelled:
            self.state.metrics.cancelled.labels(self.model_id).inc()
            self.pump = None  # count a cancellation once
        self.watch.stop()


class EventStreamResponse(Response):
    """Server-sent events from an async iterator of ready-made `data: ...` frames.

    Unlike StreamingResponse it stops as soon as the client disconnects (the generation's
    watch says so) and always closes the generation, whichever way the stream ends.
    """

    media_type = "text/event-stream"

    def __init__(self, frames: AsyncIterator[bytes], generation: Generation) -> None:
        self.frames = frames
        self.generation = generation
        self.status_code = 200
        self.background = None
        self.init_headers({"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gone = self.generation.watch.gone
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            async for frame in self.frames:
                if gone.is_set():
                    return
                await send({"type": "http.response.body", "body": frame, "more_body": True})
            if not gone.is_set():
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            return  # the connection broke while writing: the client is gone
        finally:
            with contextlib.suppress(Exception):
                await self.frames.aclose()  # type: ignore[attr-defined]
            self.generation.close()

"""Runs a blocking iterator (a llama.cpp generation) in its own thread, feeding the event loop.

Hand-written because the iterator must be advanced *and closed* by the thread that runs it
(a generator cannot be closed from another thread while it runs): `cancel()` only raises a
flag, the thread sees it after the next item and closes the iterator, which stops generation.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")

_ITEM, _ERROR, _END, _CANCELLED = "item", "error", "end", "cancelled"


class ThreadPump(Generic[T]):
    """`async for item in pump` yields what `make_items()` yields in a worker thread.

    Exceptions raised in the thread are re-raised to the consumer. `on_finish` runs on the event
    loop once the thread is done (the iterator closed), whatever happened: it frees the slot.
    """

    def __init__(
        self,
        make_items: Callable[[], Iterator[T]],
        on_finish: Callable[[], Any] | None = None,
        name: str = "hearth-generation",
    ) -> None:
        self._make_items = make_items
        self._on_finish = on_finish
        self._name = name
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._stop = threading.Event()
        self._done = False  # the consumer has seen the end (or an error, or cancel)
        self.finished = asyncio.Event()  # the thread has ended
        self.cancelled = False
        self.started = False

    def start(self) -> ThreadPump[T]:
        self.started = True
        threading.Thread(target=self._run, name=self._name, daemon=True).start()
        return self

    def cancel(self) -> None:
        """Stop after the current item (call on the event loop; idempotent)."""
        if self._done or self.finished.is_set() or self._stop.is_set():
            return
        self.cancelled = True
        self._stop.set()
        self._queue.put_nowait((_CANCELLED, None))

    def __aiter__(self) -> ThreadPump[T]:
        return self

    async def __anext__(self) -> T:
        if self._done:
            raise StopAsyncIteration
        kind, value = await self._queue.get()
        if kind == _ITEM:
            return value
        self._done = True
        if kind == _ERROR:
            raise value
        raise StopAsyncIteration

    # -- the worker thread ----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            items = self._make_items()
            try:
                for item in items:
                    if self._stop.is_set():
                        break
                    self._to_loop(self._queue.put_nowait, (_ITEM, item))
                    if self._stop.is_set():
                        break
            finally:
                close = getattr(items, "close", None)
                if close is not None:
                    close()  # stops the generation where it is
        except BaseException as exc:  # handed to the consumer, who decides what the client sees
            self._to_loop(self._queue.put_nowait, (_ERROR, exc))
        else:
            self._to_loop(self._queue.put_nowait, (_END, None))
        finally:
            self._to_loop(self._finish)

    def _finish(self) -> None:
        self.finished.set()
        if self._on_finish is not None:
            self._on_finish()

    def _to_loop(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:
            pass  # the event loop is gone (process exiting): nobody is listening any more

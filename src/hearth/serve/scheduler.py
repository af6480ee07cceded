"""Fair admission to generation: a concurrency limit, a bounded queue, round-robin across callers.

Hand-written on asyncio futures (a few dozen lines; asyncio.Semaphore is FIFO across everyone,
so one client sending 50 requests would starve the others). Callers take turns; each caller's
own requests run in arrival order. A full queue answers at once (429, with a Retry-After from
how long generations have been taking) instead of letting requests pile up; a request cancelled
while waiting leaves the queue.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque

MAX_RETRY_AFTER = 60


class Overloaded(Exception):
    """The queue is full: the request was not admitted. `retry_after`: seconds until a slot is
    likely free (how long the waiting requests should take at the recent pace)."""

    def __init__(self, retry_after: int = 1) -> None:
        super().__init__(f"queue full; retry in {retry_after} s")
        self.retry_after = retry_after


class Lease:
    """One generation slot. `release()` is idempotent and must run on the event loop thread."""

    def __init__(self, scheduler: FairScheduler) -> None:
        self._scheduler = scheduler
        self._released = False
        self._started = time.monotonic()

    @property
    def released(self) -> bool:
        return self._released

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._scheduler._release(time.monotonic() - self._started)


class FairScheduler:
    """`max_concurrency` slots; up to `queue_size` requests wait for one, taking turns by caller."""

    def __init__(self, max_concurrency: int = 1, queue_size: int = 64) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, not {max_concurrency}")
        if queue_size < 0:
            raise ValueError(f"queue_size must be 0 or more, not {queue_size}")
        self.max_concurrency = max_concurrency
        self.queue_size = queue_size
        self.running = 0
        self._waiting: dict[str, deque[asyncio.Future[None]]] = {}
        self._turns: deque[str] = deque()  # callers with waiting requests, next turn first
        self._depth = 0
        self.mean_seconds = 0.0  # recent generations' duration (moving average), for Retry-After

    @property
    def queue_depth(self) -> int:
        return self._depth

    async def acquire(self, caller: str) -> Lease:
        """Wait for a slot (raises Overloaded at once when the queue is full)."""
        if self.running < self.max_concurrency and self._depth == 0:
            self.running += 1
            return Lease(self)
        if self._depth >= self.queue_size:
            raise Overloaded(self.retry_after())
        ticket: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._waiting.get(caller)
        if queue is None:
            queue = self._waiting[caller] = deque()
            self._turns.append(caller)
        queue.append(ticket)
        self._depth += 1
        try:
            await ticket
        except asyncio.CancelledError:
            if ticket.done() and not ticket.cancelled():
                self._release()  # the slot was granted just as the caller went away
            else:
                self._forget(caller, ticket)
            raise
        return Lease(self)

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing runs or waits (shutdown); False when `timeout` passed first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.running or self._depth:
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    def _forget(self, caller: str, ticket: asyncio.Future[None]) -> None:
        queue = self._waiting.get(caller)
        if queue is None or ticket not in queue:
            return  # already taken off the queue by _dispatch
        queue.remove(ticket)
        self._depth -= 1
        if not queue:
            del self._waiting[caller]
            self._turns.remove(caller)

    def retry_after(self) -> int:
        """Seconds until the queue has likely moved on by one slot's worth of requests."""
        rounds = (self._depth + 1) / self.max_concurrency
        return max(1, min(MAX_RETRY_AFTER, math.ceil(self.mean_seconds * rounds)))

    def _release(self, seconds: float | None = None) -> None:
        if seconds is not None:
            self.mean_seconds = (
                seconds if not self.mean_seconds else (0.8 * self.mean_seconds + 0.2 * seconds)
            )
        self.running -= 1
        self._dispatch()

    def _dispatch(self) -> None:
        while self.running < self.max_concurrency and self._turns:
            caller = self._turns.popleft()
            queue = self._waiting[caller]
            ticket = queue.popleft()
            self._depth -= 1
            if queue:
                self._turns.append(caller)  # back of the line: the others go first
            else:
                del self._waiting[caller]
            if ticket.cancelled():
                continue
            ticket.set_result(None)
            self.running += 1


class ModelSchedulers:
    """A FairScheduler per chat model, each with its own slots (as many as the model batches at
    once), so a busy model's queue does not hold up requests for another. `hearth-rag` shares
    its chat model's slots."""

    def __init__(self, slots: dict[str, int], queue_size: int, aliases: dict[str, str]) -> None:
        if not slots:
            raise ValueError("a server needs at least one chat model")
        self.by_model = {spec: FairScheduler(n, queue_size) for spec, n in slots.items()}
        self.aliases = aliases  # served id -> the chat model whose slots it uses

    def for_model(self, model_id: str) -> FairScheduler:
        return self.by_model[self.aliases.get(model_id, model_id)]

    async def acquire(self, caller: str, model_id: str) -> Lease:
        return await self.for_model(model_id).acquire(caller)

    @property
    def slots(self) -> dict[str, int]:
        return {spec: s.max_concurrency for spec, s in self.by_model.items()}

    @property
    def queue_depth(self) -> int:
        return sum(s.queue_depth for s in self.by_model.values())

    @property
    def running(self) -> int:
        return sum(s.running for s in self.by_model.values())

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no model runs or queues anything; False when `timeout` passed first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        for scheduler in self.by_model.values():
            if not await scheduler.wait_idle(max(deadline - loop.time(), 0.0)):
                return False
        return True

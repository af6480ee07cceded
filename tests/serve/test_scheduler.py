"""The fair scheduler and the thread pump, without a server: order, limits, cancellation."""

from __future__ import annotations

import asyncio
import threading

import pytest

from hearth.serve.pump import ThreadPump
from hearth.serve.scheduler import FairScheduler, Overloaded


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_callers_take_turns_and_each_callers_requests_keep_their_order():
    async def scenario() -> list[str]:
        scheduler = FairScheduler(max_concurrency=1, queue_size=10)
        first = await scheduler.acquire("a")
        order: list[str] = []

        async def request(caller: str, tag: str) -> None:
            lease = await scheduler.acquire(caller)
            order.append(tag)
            await asyncio.sleep(0)
            lease.release()

        tasks = []
        for caller, tag in [("a", "a2"), ("a", "a3"), ("a", "a4"), ("b", "b1"), ("c", "c1")]:
            tasks.append(asyncio.create_task(request(caller, tag)))
            await _settle()
        assert scheduler.queue_depth == 5
        first.release()
        await asyncio.gather(*tasks)
        assert scheduler.running == 0 and scheduler.queue_depth == 0
        return order

    # "a" sent four requests before "b" and "c" sent one each: they do not wait behind all of a's.
    assert asyncio.run(scenario()) == ["a2", "b1", "c1", "a3", "a4"]


def test_full_queue_is_refused_at_once():
    async def scenario() -> None:
        scheduler = FairScheduler(max_concurrency=2, queue_size=1)
        leases = [await scheduler.acquire("a"), await scheduler.acquire("b")]
        waiter = asyncio.create_task(scheduler.acquire("c"))
        await _settle()
        with pytest.raises(Overloaded):
            await scheduler.acquire("d")
        leases[0].release()
        third = await waiter
        assert scheduler.running == 2
        for lease in (leases[1], third, third):  # release is idempotent
            lease.release()
        assert scheduler.running == 0

    asyncio.run(scenario())


def test_a_request_cancelled_while_waiting_leaves_the_queue():
    async def scenario() -> None:
        scheduler = FairScheduler(max_concurrency=1, queue_size=4)
        holder = await scheduler.acquire("a")
        gone = asyncio.create_task(scheduler.acquire("b"))
        stays = asyncio.create_task(scheduler.acquire("c"))
        await _settle()
        assert scheduler.queue_depth == 2
        gone.cancel()
        await _settle()
        assert scheduler.queue_depth == 1
        holder.release()
        lease = await stays
        assert scheduler.running == 1 and scheduler.queue_depth == 0
        lease.release()
        assert scheduler.running == 0

    asyncio.run(scenario())


def test_pump_cancel_closes_the_iterator_in_its_thread_and_frees_the_slot():
    closed = threading.Event()
    produced = []

    def slow_tokens():
        try:
            for i in range(10_000):
                produced.append(i)
                yield i
                threading.Event().wait(0.001)
        finally:
            closed.set()

    async def scenario() -> None:
        finished = asyncio.Event()
        pump = ThreadPump(slow_tokens, on_finish=finished.set).start()
        assert await pump.__anext__() == 0
        pump.cancel()
        rest = [item async for item in pump]
        await asyncio.wait_for(finished.wait(), timeout=30)
        assert pump.cancelled and pump.finished.is_set()
        assert len(rest) < 10_000

    asyncio.run(scenario())
    assert closed.is_set()  # the generator's finally ran: generation stopped
    assert len(produced) < 10_000


def test_pump_hands_exceptions_to_the_consumer():
    def broken():
        yield "first"
        raise ValueError("bad model state")

    async def scenario() -> list[str]:
        pump = ThreadPump(broken).start()
        seen = []
        with pytest.raises(ValueError, match="bad model state"):
            async for item in pump:
                seen.append(item)
        return seen

    assert asyncio.run(scenario()) == ["first"]

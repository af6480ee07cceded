"""The fair scheduler and the thread pump, without a server: order, limits, cancellation."""

from __future__ import annotations

import asyncio
import threading

import pytest

from hearth.llm import default_concurrency
from hearth.serve.pump import ThreadPump
from hearth.serve.scheduler import FairScheduler, ModelSchedulers, Overloaded


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


def test_each_model_has_its_own_slots_and_rag_shares_its_chat_models():
    async def scenario():
        schedulers = ModelSchedulers(
            {"local:smollm2": 1, "engine:smollm2": 3},
            queue_size=8,
            aliases={"hearth-rag": "local:smollm2"},
        )
        local = await schedulers.acquire("a", "local:smollm2")
        # the llama.cpp model's only slot is taken: its next request (and hearth-rag) wait...
        waiting = asyncio.ensure_future(schedulers.acquire("b", "hearth-rag"))
        await _settle()
        assert not waiting.done()
        # ...while the engine model still admits three at once
        engine = [await schedulers.acquire(c, "engine:smollm2") for c in "xyz"]
        assert schedulers.running == 4 and schedulers.queue_depth == 1
        local.release()
        rag = await asyncio.wait_for(waiting, 1)
        for lease in [rag, *engine]:
            lease.release()
        assert await schedulers.wait_idle(timeout=1)
        assert schedulers.slots == {"local:smollm2": 1, "engine:smollm2": 3}

    asyncio.run(scenario())


def test_default_slots_follow_the_backend():
    assert default_concurrency("local:smollm2") == 16  # continuous batching
    assert default_concurrency("/models/x.gguf") == 16
    assert default_concurrency("engine:smollm2") == 16
    assert default_concurrency("ollama:llama3.2") == 16


def test_full_queue_is_refused_at_once():
    async def scenario() -> None:
        scheduler = FairScheduler(max_concurrency=2, queue_size=1)
        leases = [await scheduler.acquire("a"), await scheduler.acquire("b")]
        waiter = asyncio.create_task(scheduler.acquire("c"))
        await _settle()
        with pytest.raises(Overloaded) as full:
            await scheduler.acquire("d")
        assert full.value.retry_after == 1  # nothing has finished yet: no pace to go by
        leases[0].release()
        third = await waiter
        assert scheduler.running == 2
        for lease in (leases[1], third, third):  # release is idempotent
            lease.release()
        assert scheduler.running == 0

    asyncio.run(scenario())


def test_retry_after_follows_the_pace_of_recent_generations():
    scheduler = FairScheduler(max_concurrency=2, queue_size=4)
    scheduler._release(10.0)  # a generation that took 10 s
    scheduler.running = 2
    scheduler._depth = 3
    assert scheduler.retry_after() == 20  # 4 requests ahead (with this one), 2 slots, 10 s each
    scheduler._release(0.0)  # the average moves: 0.8 * 10 + 0.2 * 0
    assert scheduler.mean_seconds == pytest.approx(8.0)
    scheduler._depth = 10_000
    assert scheduler.retry_after() == 60  # capped


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

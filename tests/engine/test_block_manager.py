"""Block manager and scheduler on hand-made sequences (no model): allocation, ref counts,
prefix sharing of full blocks, append slots, eviction order, preemption."""

from __future__ import annotations

import pytest

from hearth.engine.block_manager import BlockManager, chain_hash
from hearth.engine.sampling import SamplingParams
from hearth.engine.scheduler import Scheduler
from hearth.engine.sequence import Sequence, SequenceStatus

_ids = iter(range(10**6))


def seq(tokens, max_tokens=8, eos=()):
    return Sequence(next(_ids), tokens, SamplingParams(max_tokens=max_tokens), eos)


def test_allocate_and_free_count_blocks():
    bm = BlockManager(num_blocks=8, block_size=4)
    s = seq(range(10))  # 3 blocks: 4 + 4 + 2
    assert bm.can_allocate(s)
    bm.allocate(s)
    assert len(s.block_table) == 3 and len(set(s.block_table)) == 3
    assert bm.num_free_blocks == 5 and s.num_cached_tokens == 0
    assert all(bm.ref_count(b) == 1 for b in s.block_table)
    bm.deallocate(s)
    assert bm.num_free_blocks == 8 and s.block_table == []


def test_shared_prefix_reuses_full_blocks_with_ref_counts():
    bm = BlockManager(num_blocks=16, block_size=4)
    a = seq([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    b = seq([1, 2, 3, 4, 5, 6, 7, 8, 42, 43, 44])
    bm.allocate(a)
    bm.allocate(b)
    assert b.block_table[:2] == a.block_table[:2]  # the two full blocks of the common prefix
    assert b.block_table[2] != a.block_table[2]
    assert [bm.ref_count(x) for x in a.block_table] == [2, 2, 1]
    assert b.num_cached_tokens == 8 and bm.prefix_hit_tokens == 8
    assert bm.num_used_blocks == 4  # 3 + 3 without sharing
    bm.deallocate(a)
    assert [bm.ref_count(x) for x in b.block_table] == [1, 1, 1]
    assert bm.num_used_blocks == 3


def test_a_different_earlier_block_breaks_the_match():
    bm = BlockManager(num_blocks=16, block_size=4)
    bm.allocate(seq([1, 2, 3, 4, 5, 6, 7, 8, 9]))
    other = seq([0, 2, 3, 4, 5, 6, 7, 8, 9])  # block 2 equal, block 1 not: no reuse
    assert bm.cached_prefix_tokens(other) == 0
    bm.allocate(other)
    assert other.num_cached_tokens == 0


def test_block_with_the_last_token_is_never_reused():
    """Its logits pick the next token, so the last token always runs through the model."""
    bm = BlockManager(num_blocks=16, block_size=4)
    a = seq(range(8))
    bm.allocate(a)
    b = seq(range(8))  # identical, exactly two full blocks
    bm.allocate(b)
    assert b.num_cached_tokens == 4
    assert b.block_table[0] == a.block_table[0] and b.block_table[1] != a.block_table[1]


def test_append_slot_adds_blocks_and_indexes_filled_ones():
    bm = BlockManager(num_blocks=16, block_size=4)
    s = seq([1, 2, 3])
    bm.allocate(s)
    for token in (4, 5, 6, 7, 8, 9):  # as decode steps do: store, append, make room
        s.num_cached_tokens = s.num_tokens
        s.append(token)
        assert bm.can_append(s)
        bm.append_slot(s)
        assert len(s.block_table) == bm.blocks_needed(s.num_tokens)
    assert s.token_ids == list(range(1, 10)) and len(s.block_table) == 3
    # both blocks filled while decoding are now found by a new prompt with that prefix
    probe = seq([1, 2, 3, 4, 5, 6, 7, 8, 100])
    assert bm.cached_prefix_tokens(probe) == 8
    first = chain_hash([1, 2, 3, 4], None)
    assert bm.cached[chain_hash([5, 6, 7, 8], first)] == s.block_table[1]


def test_freed_blocks_keep_their_prefix_until_reused():
    bm = BlockManager(num_blocks=6, block_size=4)
    a = seq(range(9))
    bm.allocate(a)
    kept = a.block_table[:2]
    bm.deallocate(a)
    assert bm.num_free_blocks == 6
    b = seq([*range(8), 77])
    assert bm.can_allocate(b)
    bm.allocate(b)
    assert b.block_table[:2] == kept and b.num_cached_tokens == 8
    assert bm.num_free_blocks == 3  # the two revived blocks left the free list too


def test_unindexed_blocks_are_handed_out_before_cached_prefixes():
    bm = BlockManager(num_blocks=4, block_size=4)
    a = seq(range(6))  # one full (indexed) block, one partial
    bm.allocate(a)
    full, partial = a.block_table
    bm.deallocate(a)
    c = seq([50])
    bm.allocate(c)
    assert c.block_table == [partial]
    assert bm.cached_prefix_tokens(seq(range(6))) == 4  # the full one survived
    assert full not in c.block_table


def test_can_allocate_counts_revived_blocks_and_free_space():
    bm = BlockManager(num_blocks=3, block_size=4)
    a = seq(range(12))
    assert bm.can_allocate(a)
    bm.allocate(a)
    assert not bm.can_allocate(seq([9]))
    bm.deallocate(a)
    assert bm.can_allocate(seq(range(12)))


def test_prefix_caching_off_and_failed_steps_forget():
    off = BlockManager(num_blocks=8, block_size=4, enable_prefix_caching=False)
    off.allocate(seq(range(9)))
    assert off.cached == {} and off.cached_prefix_tokens(seq(range(9))) == 0
    bm = BlockManager(num_blocks=8, block_size=4)
    a = seq(range(9))
    bm.allocate(a)
    bm.deallocate(a, keep_cache=False)
    assert bm.cached == {} and bm.cached_prefix_tokens(seq(range(9))) == 0


def test_chain_hash_depends_on_the_prefix():
    assert chain_hash([5, 6], None) != chain_hash([5, 6], chain_hash([1], None))
    assert chain_hash([5, 6], None) == chain_hash((5, 6), None)


# ---- the scheduler over hand-made sequences ------------------------------------------------


def run_step(sched: Scheduler, token: int = 7):
    batch = sched.schedule()
    return batch, sched.postprocess(batch.seqs, [token] * len(batch.seqs))


def test_scheduler_prefills_newcomers_then_decodes_all_and_retires():
    sched = Scheduler(BlockManager(16, 4), max_num_seqs=8, max_num_batched_tokens=64)
    a, b = seq([1, 2, 3], max_tokens=2), seq([4, 5], max_tokens=3)
    sched.add(a)
    sched.add(b)
    batch, done = run_step(sched)
    assert batch.is_prefill and batch.seqs == [a, b] and done == []
    c = seq([6], max_tokens=1)
    sched.add(c)  # arrives mid-flight: the next step prefills it alone
    batch, done = run_step(sched)
    assert batch.is_prefill and batch.seqs == [c] and done == [c]
    assert c.finish_reason == "length" and c.status is SequenceStatus.FINISHED
    batch, done = run_step(sched)
    assert not batch.is_prefill and batch.seqs == [a, b] and done == [a]
    batch, done = run_step(sched, token=99)
    assert batch.seqs == [b] and done == [b] and b.completion_ids == [7, 7, 99]
    assert not sched.has_unfinished() and sched.block_manager.num_free_blocks == 16


def test_scheduler_stops_at_eos_and_respects_limits():
    sched = Scheduler(BlockManager(16, 4), max_num_seqs=2, max_num_batched_tokens=6)
    long_a, long_b = seq(range(5), eos=[7]), seq(range(10, 15))
    short = seq([1])
    for s in (long_a, long_b, short):
        sched.add(s)
    batch, done = run_step(sched)
    assert batch.seqs == [long_a]  # two 5-token rows would exceed 6 batched tokens
    assert done == [long_a] and long_a.finish_reason == "eos" and long_a.completion_ids == []
    batch, _ = run_step(sched)
    assert batch.seqs == [long_b]
    batch, _ = run_step(sched)
    assert batch.seqs == [short]


def test_scheduler_preempts_the_newest_when_blocks_run_out():
    bm = BlockManager(num_blocks=3, block_size=2)
    sched = Scheduler(bm, max_num_seqs=4, max_num_batched_tokens=64)
    a, b = seq([1, 2, 3], max_tokens=4), seq([4, 5], max_tokens=4)
    sched.add(a)
    sched.add(b)
    run_step(sched)  # a: 2 blocks, b: 1 block; both now need one more
    batch, _ = run_step(sched)
    assert batch.seqs == [a] and sched.num_preemptions == 1
    assert b.status is SequenceStatus.WAITING and b.block_table == [] and sched.waiting[0] is b
    while sched.has_unfinished():
        run_step(sched)
    assert a.completion_ids == [7] * 4 and b.completion_ids == [7] * 4
    assert bm.num_free_blocks == 3


def test_scheduler_abort_frees_blocks():
    bm = BlockManager(8, 4)
    sched = Scheduler(bm, 4, 64)
    a, b = seq(range(6)), seq(range(3))
    sched.add(a)
    sched.add(b)
    run_step(sched)
    assert sched.abort(a.seq_id) is a and a.finish_reason == "abort"
    assert sched.abort(a.seq_id) is None
    assert bm.num_used_blocks == 1 and list(sched.running) == [b]


def test_empty_prompt_is_refused():
    with pytest.raises(ValueError, match="empty"):
        seq([])

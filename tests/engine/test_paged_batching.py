"""Continuous batching on the real SmolLM2 (fp32): paged attention equals the plain KV cache,
and batched, mid-flight, prefix-shared and preempted sequences give exactly the tokens each
prompt gets alone from the single-sequence Generator."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from hearth.engine.generator import Generator  # noqa: E402
from hearth.engine.llm_engine import EngineConfig, LLMEngine  # noqa: E402
from hearth.engine.runner import ModelRunner  # noqa: E402
from hearth.engine.sampling import SamplingParams  # noqa: E402

PROMPTS = [
    "The capital of France is",
    "Once upon a time, in a land far away, there lived a",
    "def add(a, b):",
    "Water boils at",
]
MAX_TOKENS = 10


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: on 2 shared cores, two OpenMP threads spin-wait for each other and
    these small batched forwards run 10-20x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def solo(engine_model, engine_tokenizer):
    """Tokens a prompt gets alone from the existing Generator (cached greedy), memoized."""
    gen = Generator(precision="fp32")  # the session fixture's fp32 model
    gen.model, gen.tokenizer = engine_model, engine_tokenizer
    memo: dict = {}

    def run(ids, params=None):
        params = params or SamplingParams(max_tokens=MAX_TOKENS)
        key = (tuple(ids), params)
        if key not in memo:
            memo[key] = gen.run(list(ids), params)
        return memo[key]

    return run


def make_engine(model, tokenizer, **kw):
    kw.setdefault("block_size", 4)  # small blocks: every sequence crosses block boundaries
    kw.setdefault("num_blocks", 256)
    return LLMEngine(model, tokenizer, EngineConfig(**kw))


def test_paged_attention_logits_match_the_kv_cache(engine_model, engine_tokenizer):
    """A left-padded batch with prefix hits in the pool: the same logits as each sequence
    through the model's own KV cache, for the prefill and for a decode step."""
    engine = make_engine(engine_model, engine_tokenizer, block_size=4)
    prompts = [engine_tokenizer.encode(p) for p in PROMPTS[:3]]
    for i, ids in enumerate(prompts):
        engine.add_request(ids, SamplingParams(max_tokens=4), seq_id=i)
    seqs = engine.scheduler.schedule().seqs
    runner: ModelRunner = engine.runner
    inputs = runner.prepare(seqs)
    assert inputs.input_ids.shape == (3, max(len(p) for p in prompts))
    logits = engine_model(
        inputs.input_ids, inputs.positions, kv_cache=inputs.cache, attn_mask=inputs.attn_mask
    )[:, -1]
    next_ids = logits.argmax(-1).tolist()
    engine.scheduler.postprocess(seqs, next_ids)
    decode = engine.scheduler.schedule()
    assert not decode.is_prefill
    step = runner.prepare(decode.seqs)
    decode_logits = engine_model(
        step.input_ids, step.positions, kv_cache=step.cache, attn_mask=step.attn_mask
    )[:, -1]
    for i, ids in enumerate(prompts):
        cache = engine_model.new_cache(len(ids) + 2)
        ref = engine_model(torch.tensor([ids]), kv_cache=cache)[0, -1]
        torch.testing.assert_close(logits[i], ref, atol=1e-4, rtol=1e-4)
        ref_next = engine_model(torch.tensor([[next_ids[i]]]), kv_cache=cache)[0, -1]
        torch.testing.assert_close(decode_logits[i], ref_next, atol=1e-4, rtol=1e-4)


def test_batched_greedy_equals_each_prompt_alone(engine_model, engine_tokenizer, solo):
    engine = make_engine(engine_model, engine_tokenizer)
    ids = [engine_tokenizer.encode(p) for p in PROMPTS]
    assert len({len(x) for x in ids}) > 1  # different lengths: padding is exercised
    outs = engine.generate(ids, SamplingParams(max_tokens=MAX_TOKENS))
    for prompt, out in zip(ids, outs, strict=True):
        ref = solo(prompt)
        assert out.token_ids == ref.token_ids
        assert out.text == ref.text
        assert out.finish_reason == ref.finish_reason
    assert engine.runner.max_batch == len(PROMPTS)
    assert engine.runner.forwards == MAX_TOKENS  # one prefill + one forward per decode step
    assert engine.block_manager.num_free_blocks == engine.block_manager.num_blocks


def test_sequences_admitted_mid_flight_match_alone(engine_model, engine_tokenizer, solo):
    engine = make_engine(engine_model, engine_tokenizer)
    ids = [engine_tokenizer.encode(p) for p in PROMPTS]
    params = SamplingParams(max_tokens=MAX_TOKENS)
    tokens: dict[int, list[int]] = {}
    first = [engine.add_request(x, params) for x in ids[:2]]
    for _ in range(4):
        for out in engine.step():
            tokens.setdefault(out.seq_id, []).append(out.token_id)
    later = [engine.add_request(x, params) for x in ids[2:]]
    sizes = []
    while engine.has_unfinished():
        outs = engine.step()
        sizes.append(len(outs))
        for out in outs:
            tokens.setdefault(out.seq_id, []).append(out.token_id)
    assert max(sizes) == 4  # old and new sequences decoded in one forward
    eos = engine_tokenizer.eos_token_id
    for seq_id, prompt in zip(first + later, ids, strict=True):
        got = [t for t in tokens[seq_id] if t != eos]
        assert got == solo(prompt).token_ids


def test_shared_prefix_blocks_are_computed_once(engine_model, engine_tokenizer, solo):
    tok = engine_tokenizer
    system = "You are a careful assistant. Answer in one short sentence, plainly. Question: "
    ids = [tok.encode(system + q) for q in ("Why is the sky blue?", "What is a cat?")]
    common = next(i for i, (a, b) in enumerate(zip(*ids, strict=False)) if a != b)
    assert common >= 12
    shared = make_engine(engine_model, tok)
    unshared = make_engine(engine_model, tok, enable_prefix_caching=False)
    params = SamplingParams(max_tokens=6)
    for eng in (shared, unshared):
        for x in ids:
            eng.add_request(x, params)
        eng.step()  # both prefilled in one forward
    bm = shared.block_manager
    a, b = (shared.sequence(i) for i in (0, 1))
    n_shared = common // 4
    assert b.block_table[:n_shared] == a.block_table[:n_shared]
    assert all(bm.ref_count(x) == 2 for x in a.block_table[:n_shared])
    assert bm.num_used_blocks == unshared.block_manager.num_used_blocks - n_shared
    assert b.num_cached_tokens >= 4 * n_shared
    for eng in (shared, unshared):
        while eng.has_unfinished():
            eng.step()
    outs = [shared.output(s) for s in (a, b)]
    for prompt, out in zip(ids, outs, strict=True):
        assert out.token_ids == solo(prompt, params).token_ids
    # a later request reuses the finished ones' blocks (lazy eviction): fewer tokens prefilled
    before = bm.prefix_hit_tokens
    [late] = shared.generate([ids[1]], params)
    assert bm.prefix_hit_tokens - before >= 4 * n_shared
    assert late.token_ids == outs[1].token_ids


def test_preemption_under_a_tiny_block_budget(engine_model, engine_tokenizer, solo):
    ids = [engine_tokenizer.encode(p) for p in PROMPTS]
    need = max(-(-(len(x) + MAX_TOKENS) // 4) for x in ids)
    engine = make_engine(engine_model, engine_tokenizer, block_size=4, num_blocks=need + 2)
    outs = engine.generate(ids, SamplingParams(max_tokens=MAX_TOKENS))
    assert engine.scheduler.num_preemptions > 0
    for prompt, out in zip(ids, outs, strict=True):
        assert out.token_ids == solo(prompt).token_ids
    assert engine.block_manager.num_free_blocks == need + 2


def test_seeded_sampling_and_stop_strings_match_alone(engine_model, engine_tokenizer, solo):
    ids = [engine_tokenizer.encode(p) for p in PROMPTS[:3]]
    sampled = SamplingParams(strategy="sample", temperature=0.8, top_p=0.9, seed=7, max_tokens=8)
    greedy = solo(ids[1])
    word = greedy.text.split()[3]
    stopped = SamplingParams(max_tokens=MAX_TOKENS, stop=(word,))
    engine = make_engine(engine_model, engine_tokenizer)
    outs = engine.generate(ids, [sampled, stopped, sampled])
    for i in (0, 2):
        assert outs[i].token_ids == solo(ids[i], sampled).token_ids
    ref = solo(ids[1], stopped)
    assert ref.finish_reason == "stop" and outs[1].finish_reason == "stop"
    assert outs[1].text == ref.text and outs[1].token_ids == ref.token_ids
    assert word not in outs[1].text


def test_a_stop_string_late_in_a_long_answer_is_found(engine_model, engine_tokenizer, solo):
    """The engine decodes only a tail of the completion each step: a multi-word stop string
    (with its leading space) found 40+ tokens in must cut exactly where the solo loop cuts."""
    runs = [
        (solo(i, SamplingParams(max_tokens=64)), i) for i in map(engine_tokenizer.encode, PROMPTS)
    ]
    free, ids = max(runs, key=lambda run: len(run[0].token_ids))
    assert len(free.token_ids) >= 50, "some prompt should answer at length"
    tail = engine_tokenizer.decode(free.token_ids[40:])
    words = tail.split()
    stop = " " + " ".join(words[1:3])
    assert stop in tail, "the greedy text should repeat its words with single spaces"
    params = SamplingParams(max_tokens=64, stop=(stop,))
    out = make_engine(engine_model, engine_tokenizer).generate([ids], params)[0]
    ref = solo(ids, params)
    assert ref.finish_reason == out.finish_reason == "stop"
    assert out.text == ref.text and out.token_ids == ref.token_ids
    assert len(out.token_ids) >= 40


def test_requests_that_cannot_fit_are_refused(engine_model, engine_tokenizer):
    from hearth.errors import ConfigError, ContextWindowError

    engine = make_engine(engine_model, engine_tokenizer, num_blocks=2, max_model_len=64)
    with pytest.raises(ConfigError, match="num_blocks"):
        engine.add_request(list(range(1, 20)), SamplingParams(max_tokens=4))
    with pytest.raises(ContextWindowError, match="max_tokens"):
        engine.add_request([1, 2], SamplingParams(max_tokens=100))
    with pytest.raises(ConfigError, match="greedy or sample"):
        engine.add_request([1, 2], SamplingParams(strategy="beam"))

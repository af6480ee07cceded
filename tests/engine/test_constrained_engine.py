"""Constrained generation on our engine with the real SmolLM2 (fp32): every strategy (greedy,
sample, contrastive, beam), speculative decoding equal to constrained greedy, the batching
engine with constrained and free sequences side by side, and EngineChatModel's `constraint`."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hearth.engine.chat_model import EngineChatModel  # noqa: E402
from hearth.engine.decoding import generate  # noqa: E402
from hearth.engine.generator import CachedStep, Generator  # noqa: E402
from hearth.engine.llm_engine import EngineConfig, LLMEngine  # noqa: E402
from hearth.engine.masking import mask_rows, matcher_for  # noqa: E402
from hearth.engine.sampling import SamplingParams  # noqa: E402
from hearth.engine.speculative import (  # noqa: E402
    Draft,
    ModelDrafter,
    PromptLookupDrafter,
    draft_masks,
    speculative_generate,
    truncated_draft,
)
from hearth.llm.tool_calls import tool_messages, tool_request  # noqa: E402
from hearth.structured import compile  # noqa: E402
from hearth.types import Message  # noqa: E402

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}
PHONE = r"[0-9]{3}-[0-9]{4}"
ANSWERS = ["yes", "no"]  # fewer first tokens than beam search looks at: dead candidates
ASK = "Describe a person as JSON with a name and an age."
PERSON_PROMPT = "A person, as JSON with a name and an age: "  # short: contrastive runs uncached
RECORD = (
    'Record: {"name": "Ada Lovelace", "age": 36}\nCopy the record above exactly, as JSON.\nJSON: '
)
STRATEGIES = {
    "greedy": {},
    "sample": {"temperature": 0.9, "top_k": 40, "top_p": 0.95, "seed": 3},
    "contrastive": {"top_k": 2},
    "beam": {"num_beams": 3},
}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: on 2 shared cores, two OpenMP threads spin-wait for each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def gen(engine_model, engine_tokenizer):
    g = Generator(precision="fp32")  # the session fixture's fp32 model
    g.model, g.tokenizer = engine_model, engine_tokenizer
    return g


def chat_ids(tokenizer, text: str) -> list[int]:
    return tokenizer.encode_chat([Message("user", text)])


# ---- the adapter and the masks ------------------------------------------------------------


def test_the_vocabulary_is_read_once_and_kept_by_its_tokenizer(engine_tokenizer):
    vocab = engine_tokenizer.structured()
    assert engine_tokenizer.structured() is vocab
    assert vocab.vocab_size == engine_tokenizer.vocab_size
    assert vocab.eos_token == engine_tokenizer.eos_token_id
    # what the model writes, token for token, is what the constraint reads
    m = compile(PERSON).matcher(vocab)
    ids = engine_tokenizer.encode('{"name": "Bo", "age": 7}', add_special_tokens=False)
    assert m.advance_many(ids) == len(ids) and m.done


def test_rows_are_masked_by_their_own_matcher_only(engine_tokenizer):
    vocab = engine_tokenizer.structured()
    width = engine_tokenizer.vocab_size + 7  # a padded output layer
    logits = torch.randn(3, width)
    digits = compile(PHONE).matcher(vocab)
    masked = mask_rows(logits, [digits, None, compile(PERSON).matcher(vocab)])
    assert torch.equal(masked[1], logits[1])  # the free row is untouched
    allowed = np.flatnonzero(digits.allowed())
    kept = torch.isfinite(masked[0]).nonzero().flatten().numpy()
    assert np.array_equal(kept, allowed) and len(kept) > 0
    assert all(engine_tokenizer.decode([int(t)])[:1].isdigit() for t in kept)
    past = masked[[0, 2], engine_tokenizer.vocab_size :]  # past the vocabulary: never allowed
    assert torch.isinf(past).all()
    assert int(torch.isfinite(masked[2]).sum()) == 1  # a JSON object opens one way


# ---- every strategy ---------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_json_output_validates_for_every_strategy(gen, engine_tokenizer, strategy):
    schema = compile(PERSON)
    params = SamplingParams(
        strategy=strategy, max_tokens=40, constraint=PERSON, **STRATEGIES[strategy]
    )
    report = gen.run(engine_tokenizer.encode(PERSON_PROMPT), params)
    value = schema.parse(report.text)  # raises when it does not validate
    assert set(value) == {"name", "age"}
    assert report.finish_reason == "stop"  # the constraint completed it, nothing after
    assert len(report.token_ids) < 40


@pytest.mark.parametrize("strategy", list(STRATEGIES))
@pytest.mark.parametrize("source", [PHONE, ANSWERS], ids=["regex", "choice"])
def test_regex_and_choice_hold_for_every_strategy(gen, engine_tokenizer, strategy, source):
    constraint = compile(source)
    params = SamplingParams(strategy=strategy, max_tokens=12, constraint=constraint,
                            **STRATEGIES[strategy])  # fmt: skip
    prompt = "My phone number is" if source is PHONE else "Is the sky blue? Answer:"
    report = gen.run(engine_tokenizer.encode(prompt), params)
    assert constraint.accepts(report.text), report.text
    assert report.finish_reason == "stop"


def test_a_constraint_without_a_matcher_is_refused(engine_model):
    params = SamplingParams(max_tokens=4, constraint=PHONE)
    with pytest.raises(ValueError, match="matcher"):
        generate(CachedStep(engine_model, 16), [1, 2, 3], params)


@pytest.mark.slow
def test_beam_search_gives_each_beam_its_own_matcher(gen, engine_tokenizer):
    """Beams that split on different tokens keep their own state: every finished
    hypothesis in the tree (not just the best) satisfies the constraint."""
    constraint = compile(PERSON)
    params = SamplingParams(strategy="beam", num_beams=3, max_tokens=40, constraint=constraint)
    report = gen.run(engine_tokenizer.encode(PERSON_PROMPT), params)
    assert constraint.accepts(report.text) and report.finish_reason == "stop"
    tree = report.tree
    assert len(tree.finished) >= 2
    eos = engine_tokenizer.eos_token_id
    for node, _ in tree.finished:
        ids = [n.token_id for n in tree.path(node) if n.token_id != eos]
        assert constraint.accepts(engine_tokenizer.decode(ids))


# ---- speculative decoding -------------------------------------------------------------------


@pytest.mark.slow
def test_speculative_output_is_constrained_greedy(gen, engine_model, engine_tokenizer):
    ids = engine_tokenizer.encode(RECORD)
    eos = [engine_tokenizer.eos_token_id]
    params = SamplingParams(max_tokens=30, constraint=PERSON)
    expected = gen.run(ids, params)
    assert expected.finish_reason == "stop"
    drafters = {
        "lookup": PromptLookupDrafter(),
        "model": ModelDrafter(truncated_draft(engine_model, 4), max_len=len(ids) + 64),
    }
    for name, drafter in drafters.items():
        m = matcher_for(params, engine_tokenizer)
        out = speculative_generate(engine_model, ids, drafter, params, 4, eos, matcher=m)
        assert out.token_ids == expected.token_ids, name
        assert out.finish_reason == "stop" and m.done
        assert out.draft_tokens_accepted > 0, name


class WrongSecond:
    """Drafts the true continuation with its second token swapped for another token the
    constraint allows there: the matcher takes it, the target rejects it, so the matcher must
    be rolled back past it (and past the right tokens drafted after it)."""

    def __init__(self, prompt, expected, constraint, vocab):
        self.prompt, self.expected = len(prompt), expected
        self.constraint, self.vocab = constraint, vocab

    def propose(self, context, k, params, gen):
        n = len(context) - self.prompt
        want = self.expected[n : n + k]
        if len(want) < 3:
            return Draft(want)
        m = self.constraint.matcher(self.vocab)
        m.advance_many(self.expected[: n + 1])
        other = next((int(t) for t in np.flatnonzero(m.allowed()) if t != want[1]), None)
        if other is None:  # a forced token: nothing else to draft there
            return Draft(want)
        return Draft([want[0], other, *want[2:]])


@pytest.mark.slow
def test_rejected_drafts_roll_the_matcher_back(gen, engine_model, engine_tokenizer):
    ids = engine_tokenizer.encode(PERSON_PROMPT)
    constraint = compile(PERSON)
    params = SamplingParams(max_tokens=40, constraint=constraint)
    expected = gen.run(ids, params).token_ids
    drafter = WrongSecond(ids, expected, constraint, engine_tokenizer.structured())
    m = matcher_for(params, engine_tokenizer)
    out = speculative_generate(engine_model, ids, drafter, params, 4, [2], matcher=m)
    assert out.token_ids == expected
    assert out.draft_tokens_accepted > 0


def test_draft_masks_stop_at_a_refused_token(engine_tokenizer):
    vocab = engine_tokenizer.structured()
    digit = [engine_tokenizer.encode(d, add_special_tokens=False)[0] for d in "123-"]
    m = compile(PHONE).matcher(vocab)
    masks = draft_masks(m, [digit[0], digit[1], digit[3], digit[2]])
    assert (masks.taken, masks.complete, len(masks.allowed)) == (2, False, 3)
    assert masks.allowed[2][digit[2]] and not masks.allowed[2][digit[3]]
    m.rollback(1)  # the caller rolls back what the target rejected
    assert m.advance(digit[2])


@pytest.mark.slow
def test_sampled_speculation_stays_inside_the_constraint(engine_model, engine_tokenizer):
    ids = engine_tokenizer.encode(PERSON_PROMPT)
    params = SamplingParams(strategy="sample", temperature=0.9, seed=5, max_tokens=40,
                            constraint=PERSON)  # fmt: skip
    drafter = ModelDrafter(truncated_draft(engine_model, 4), max_len=len(ids) + 64)
    m = matcher_for(params, engine_tokenizer)
    out = speculative_generate(engine_model, ids, drafter, params, 4, [2], matcher=m)
    compile(PERSON).parse(engine_tokenizer.decode(out.token_ids))
    assert out.finish_reason == "stop"


# ---- the batching engine and the chat model -----------------------------------------------------


@pytest.mark.slow
def test_batched_constrained_and_free_sequences_match_each_alone(engine_model, engine_tokenizer):
    json_ids = engine_tokenizer.encode(PERSON_PROMPT)
    free_ids = engine_tokenizer.encode("The capital of France is")
    phone_ids = engine_tokenizer.encode("My phone number is")
    runs = [
        (json_ids, SamplingParams(max_tokens=30, constraint=PERSON)),
        (free_ids, SamplingParams(max_tokens=12)),
        (
            phone_ids,
            SamplingParams(
                strategy="sample", temperature=0.8, seed=2, max_tokens=12, constraint=PHONE
            ),
        ),  # fmt: skip
        (free_ids, SamplingParams(max_tokens=12, constraint=ANSWERS)),
    ]

    def engine():
        return LLMEngine(engine_model, engine_tokenizer, EngineConfig(block_size=8, num_blocks=64))

    together = engine().generate([i for i, _ in runs], [p for _, p in runs])
    for (ids, params), out in zip(runs, together, strict=True):
        alone = engine().generate([ids], params)[0]
        assert out.token_ids == alone.token_ids and out.finish_reason == alone.finish_reason
        if params.constraint is not None:
            assert out.finish_reason == "stop"
            params.constraint.parse(out.text)
    free = together[1]
    assert free.finish_reason == "length" and len(free.token_ids) == 12


@pytest.fixture(scope="module")
def chat_engine(engine_model, engine_tokenizer, gguf_path):
    m = EngineChatModel(gguf_path, 1024, model=engine_model, tokenizer=engine_tokenizer,
                        block_size=8, kv_cache_mb=32)  # fmt: skip
    yield m.warm_up()
    m.close()


@pytest.mark.slow
def test_chat_model_takes_a_constraint(chat_engine):
    assert chat_engine.supports_json_schema and chat_engine.masks_tokens
    result = chat_engine.chat([Message("user", ASK)], constraint=PERSON, max_tokens=40)
    value = compile(PERSON).parse(result.text)
    assert set(value) == {"name", "age"}
    assert result.finish_reason == "stop"
    pieces = list(chat_engine.stream([Message("user", "Is water wet?")], constraint=ANSWERS))
    assert "".join(pieces) in ANSWERS


WEATHER = [{"type": "function", "function": {
    "name": "get_weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
                   "required": ["city"]},
}}]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(
    "choice", ["required", {"type": "function", "function": {"name": "get_weather"}}]
)
def test_chat_model_calls_tools_under_their_schema(chat_engine, choice):
    """SmolLM2's template has no tool format: the tools go in a system message, and the mask
    holds it to one valid call, streamed or not."""
    import jsonschema

    assert not chat_engine.supports_tools
    ask = [Message("user", "What is the weather like in Paris?")]
    result = chat_engine.chat(ask, tools=WEATHER, tool_choice=choice, max_tokens=40)
    assert result.finish_reason == "tool_calls" and len(result.tool_calls) == 1
    call = result.tool_calls[0]
    assert call.name == "get_weather"
    jsonschema.validate(json.loads(call.arguments), WEATHER[0]["function"]["parameters"])
    prompt = chat_engine._encode(tool_messages(ask, None, True))
    with_tools = chat_engine._encode(ask, tool_request(WEATHER, choice, native=False))
    assert len(with_tools) > len(prompt)  # the tool list is in the prompt

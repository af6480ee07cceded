"""Speculative decoding: at temperature 0 exactly the target's greedy tokens on the real SmolLM2
(prompt lookup and self-speculative); above 0 the target's distribution, tested statistically."""

from __future__ import annotations

import pytest
import torch

from hearth.engine.config import ModelConfig
from hearth.engine.decoding import generate
from hearth.engine.model import LlamaModel
from hearth.engine.sampling import SamplingParams
from hearth.engine.speculative import (
    ModelDrafter,
    PromptLookupDrafter,
    cached_greedy,
    lookup_draft,
    next_token_probs,
    speculative_generate,
    truncated_draft,
)

RAG_PROMPT = (
    "Context: The Hearth engine stores its vectors in an embedded SQLite database called "
    "hearth.db, located in the project's data folder. Backups run nightly at 2 a.m.\n"
    "Question: Where does the Hearth engine store its vectors?\n"
    "Answer: The Hearth engine stores its vectors in"
)
PROMPTS = [RAG_PROMPT, "def fibonacci(n):\n    "]


# ---- prompt lookup ----------------------------------------------------------------------------


def test_lookup_takes_the_most_recent_longest_match():
    ctx = [1, 2, 3, 9, 1, 2, 3, 7, 8, 5, 2, 3]
    assert lookup_draft(ctx, k=2, max_ngram=2) == [7, 8]  # "2 3" last seen before 7 8
    assert lookup_draft([4, 5, 6, 4], k=3) == [5, 6, 4]  # falls back to a 1-gram
    assert lookup_draft([1, 2, 3], k=3) == []
    assert lookup_draft([7], k=3) == []


def test_truncated_draft_shares_weights_and_leaves_the_target_alone(engine_model):
    draft = truncated_draft(engine_model, 4)
    assert len(draft.layers) == 4 and draft.config.n_layers == 4
    assert len(engine_model.layers) == engine_model.config.n_layers == 30
    assert draft.layers[0] is engine_model.layers[0] and draft.norm is engine_model.norm
    with pytest.raises(ValueError):
        truncated_draft(engine_model, 0)


# ---- temperature 0: identical to greedy on the real model ----------------------------------


@pytest.fixture(scope="module")
def one_thread():
    """2 shared cores: small-batch matmuls run faster (and steadier) on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def greedy_reference(model: LlamaModel, ids: list[int], eos: int, n: int) -> list[int]:
    def step(x: torch.Tensor) -> torch.Tensor:
        return model(x, last_only=True)[:, -1]

    params = SamplingParams(max_tokens=n)
    return generate(step, ids, params, eos_token_ids=[eos]).token_ids


@pytest.mark.slow
@pytest.mark.parametrize("prompt", PROMPTS)
def test_greedy_output_is_the_targets(engine_model, engine_tokenizer, one_thread, prompt):
    ids, eos = engine_tokenizer.encode(prompt), engine_tokenizer.eos_token_id
    expected = greedy_reference(engine_model, ids, eos, 32)
    assert len(expected) == 32
    assert cached_greedy(engine_model, ids, 32, [eos]) == expected
    params = SamplingParams(max_tokens=32)
    drafters = {
        "lookup": PromptLookupDrafter(),
        "self": ModelDrafter(truncated_draft(engine_model, 8), max_len=512),
    }
    for name, drafter in drafters.items():
        out = speculative_generate(engine_model, ids, drafter, params, k=4, eos_token_ids=[eos])
        assert out.token_ids == expected, name
        assert out.draft_tokens_proposed > 0
        assert 0 <= out.draft_tokens_accepted <= out.draft_tokens_proposed
        if name == "lookup" and prompt == RAG_PROMPT:  # the answer copies the context
            assert out.acceptance_rate > 0.5
            assert out.target_forwards < 20


# ---- temperature > 0: the target's distribution ----------------------------------------------


def tiny_model(seed: int, n_layers: int = 2) -> LlamaModel:
    config = ModelConfig(
        vocab_size=32,
        hidden_size=32,
        intermediate_size=64,
        n_layers=n_layers,
        n_heads=4,
        n_kv_heads=2,
        head_dim=8,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaModel(config).eval()
    with torch.no_grad():
        model.embed_tokens.weight.mul_(0.2)  # logits neither flat nor one-hot
    return model


def exact_distributions(model, prompt, params) -> tuple[torch.Tensor, torch.Tensor]:
    """p(first token) and the marginal p(second token), from the target alone."""
    with torch.no_grad():
        p1 = next_token_probs(model(torch.tensor(prompt))[-1], prompt, params)
        p2 = torch.zeros_like(p1)
        for t in range(p1.shape[0]):
            ctx = [*prompt, t]
            p2 += p1[t] * next_token_probs(model(torch.tensor(ctx))[-1], ctx, params)
    return p1, p2


def chi_square_pvalue(counts: torch.Tensor, probs: torch.Tensor) -> float:
    """Pearson's test, with cells expected under 5 counts merged into one."""
    stats = pytest.importorskip("scipy.stats")
    n = float(counts.sum())
    expected = probs.double() * n
    big = expected >= 5
    obs = [*counts[big].tolist(), float(counts[~big].sum())]
    exp = [*expected[big].tolist(), float(expected[~big].sum())]
    if exp[-1] == 0:
        obs, exp = obs[:-1], exp[:-1]
    return float(stats.chisquare(obs, [e * sum(obs) / sum(exp) for e in exp]).pvalue)


@pytest.mark.parametrize("kind", ["draft_model", "self_speculative", "prompt_lookup"])
def test_sampling_keeps_the_targets_distribution(kind):
    target = tiny_model(0)
    drafters = {
        "draft_model": lambda: ModelDrafter(tiny_model(1), max_len=64),
        "self_speculative": lambda: ModelDrafter(truncated_draft(target, 1), max_len=64),
        "prompt_lookup": lambda: PromptLookupDrafter(max_ngram=2),
    }
    prompt = [3, 7, 1, 5, 3, 7, 1, 9, 3, 7]  # "3 7" recurs: prompt lookup drafts "1 9"/"1 5"
    base = SamplingParams(strategy="sample", temperature=1.0, max_tokens=2)
    p1, p2 = exact_distributions(target, prompt, base)
    assert 0.1 < float(p1.max()) < 0.5  # a real distribution: neither flat nor near-certain
    counts1, counts2 = torch.zeros(32), torch.zeros(32)
    proposed = accepted = 0
    runs = 1500
    for seed in range(runs):
        params = SamplingParams(strategy="sample", temperature=1.0, max_tokens=2, seed=seed)
        out = speculative_generate(target, prompt, drafters[kind](), params, k=3)
        counts1[out.token_ids[0]] += 1
        counts2[out.token_ids[1]] += 1
        proposed, accepted = (
            proposed + out.draft_tokens_proposed,
            accepted + out.draft_tokens_accepted,
        )
    assert proposed > 0 and 0 < accepted < proposed  # both accept and reject paths ran
    for counts, probs in ((counts1, p1), (counts2, p2)):
        assert chi_square_pvalue(counts, probs) > 1e-3
        assert 0.5 * float((counts / runs - probs).abs().sum()) < 0.08  # total variation

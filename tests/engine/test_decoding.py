"""Generation loops against a tiny random LlamaForCausalLM wrapped in the `step` protocol:
greedy and beam search equal transformers' generate; contrastive equals the plain formula."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from hearth.engine.decoding import (
    Delta,
    beam_search,
    generate,
    stream,
)
from hearth.engine.sampling import SamplingParams

transformers = pytest.importorskip("transformers")

PROMPTS = [[1, 5, 9, 30, 7], [1, 64, 3], [1, 100, 101, 102, 20, 40, 60, 80], [1, 17]]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        initializer_range=0.2, bos_token_id=1, eos_token_id=2, pad_token_id=0,
    )  # fmt: skip
    return transformers.LlamaForCausalLM(config).eval()


@pytest.fixture(scope="module")
def step(model):
    @torch.no_grad()
    def step(input_ids: torch.Tensor) -> torch.Tensor:
        return model(input_ids).logits[:, -1, :]

    return step


@pytest.fixture(scope="module")
def step_with_hidden(model):
    @torch.no_grad()
    def step_with_hidden(input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = model(input_ids, output_hidden_states=True)
        return out.logits[:, -1, :], out.hidden_states[-1]

    return step_with_hidden


def hf_generate(model, prompt, eos, **kwargs) -> list[int]:
    with torch.no_grad():
        out = model.generate(
            torch.tensor([prompt]), eos_token_id=eos, pad_token_id=0, do_sample=False, **kwargs
        )
    return out[0, len(prompt) :].tolist()


def with_eos(result, eos: int) -> list[int]:
    return result.token_ids + ([eos] if result.finish_reason == "eos" else [])


# --- greedy and beam search: exactly transformers' tokens ---


@pytest.mark.parametrize("eos", [2, 12])
@pytest.mark.parametrize("prompt", PROMPTS)
def test_greedy_equals_transformers(model, step, prompt, eos):
    ours = generate(step, prompt, SamplingParams(max_tokens=32), eos_token_ids=[eos])
    assert with_eos(ours, eos) == hf_generate(model, prompt, eos, max_new_tokens=32)


def test_greedy_with_repetition_penalty_equals_transformers(model, step):
    params = SamplingParams(max_tokens=24, repetition_penalty=1.5)
    ours = generate(step, PROMPTS[0], params, eos_token_ids=[2])
    theirs = hf_generate(model, PROMPTS[0], 2, max_new_tokens=24, repetition_penalty=1.5)
    assert with_eos(ours, 2) == theirs


BEAM_CASES = [
    (early, lp, eos) for early in (False, True, "never") for lp in (1.0, 0.5) for eos in (2, 12)
]


@pytest.mark.parametrize("early, length_penalty, eos", BEAM_CASES)
def test_beam_search_equals_transformers(model, step, early, length_penalty, eos):
    params = SamplingParams(
        strategy="beam", num_beams=4, max_tokens=32, early_stopping=early,
        length_penalty=length_penalty,
    )  # fmt: skip
    ended_early = 0
    for prompt in PROMPTS:
        ours = generate(step, prompt, params, eos_token_ids=[eos])
        theirs = hf_generate(
            model, prompt, eos, max_new_tokens=32, num_beams=4, early_stopping=early,
            length_penalty=length_penalty,
        )  # fmt: skip
        assert with_eos(ours, eos) == theirs, prompt
        ended_early += ours.finish_reason == "eos"
    if eos == 12:
        assert ended_early  # the EOS path is exercised


def test_beam_tree_holds_best_sequence_as_kept_path(step):
    params = SamplingParams(strategy="beam", num_beams=3, max_tokens=16)
    for eos in (2, 12):
        tokens, reason, tree = beam_search(step, PROMPTS[0], params, eos_token_ids=[eos])
        path = tree.path(tree.best)
        expected = tokens + ([eos] if reason == "eos" else [])
        assert [n.token_id for n in path] == expected
        assert all(n.status == "kept" for n in path[:-1])
        assert path[-1].status == "finished"
        assert [n.step for n in path] == list(range(len(path)))
        assert any(n.status == "pruned" for n in tree.nodes)
        for node in tree.nodes:
            assert 0.0 <= node.prob <= 1.0
        # each step looks at 2 * num_beams candidates
        steps = {n.step for n in tree.nodes}
        assert all(sum(n.step == s for n in tree.nodes) == 6 for s in steps)
        assert len(tree.children(None)) == 6


# --- contrastive search ---


def naive_contrastive(model, prompt, alpha, k, n) -> list[int]:
    """Su et al. 2022, one candidate at a time, full forward passes."""
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(n):
            out = model(torch.tensor([ids]), output_hidden_states=True)
            probs = out.logits[0, -1].softmax(-1)
            context = out.hidden_states[-1][0]
            best, best_score = None, -float("inf")
            for p, v in zip(*probs.topk(k), strict=True):
                h = model(torch.tensor([ids + [int(v)]]), output_hidden_states=True)
                h_v = h.hidden_states[-1][0, -1]
                penalty = F.cosine_similarity(context, h_v[None], dim=-1).max()
                score = (1 - alpha) * p - alpha * penalty
                if score > best_score:
                    best, best_score = int(v), score
            ids.append(best)
    return ids[len(prompt) :]


@pytest.mark.parametrize("prompt", PROMPTS[:2])
def test_contrastive_equals_formula(model, step_with_hidden, prompt):
    params = SamplingParams(strategy="contrastive", penalty_alpha=0.6, top_k=4, max_tokens=12)
    ours = generate(None, prompt, params, step_with_hidden=step_with_hidden)
    assert ours.token_ids == naive_contrastive(model, prompt, 0.6, 4, 12)


def test_contrastive_alpha_zero_is_greedy(step, step_with_hidden):
    params = SamplingParams(strategy="contrastive", penalty_alpha=0.0, top_k=4, max_tokens=16)
    ours = generate(None, PROMPTS[0], params, step_with_hidden=step_with_hidden)
    assert ours.token_ids == generate(step, PROMPTS[0], SamplingParams(max_tokens=16)).token_ids


def test_contrastive_changes_output(step, step_with_hidden):
    params = SamplingParams(strategy="contrastive", penalty_alpha=0.9, top_k=8, max_tokens=16)
    ours = generate(None, PROMPTS[0], params, step_with_hidden=step_with_hidden)
    assert ours.token_ids != generate(step, PROMPTS[0], SamplingParams(max_tokens=16)).token_ids


# --- sampling, seeds ---


def test_seeded_sampling_reproducible(step):
    def run(seed):
        params = SamplingParams(strategy="sample", top_p=0.95, seed=seed, max_tokens=24)
        return generate(step, PROMPTS[0], params)

    assert run(3).token_ids == run(3).token_ids
    assert run(3).token_ids != run(4).token_ids


@pytest.mark.parametrize("prompt", PROMPTS[:2])
def test_sampling_chain_equals_transformers_sample(model, step, prompt):
    """Unseeded, both draw from torch's global RNG: same seed, same filters -> same tokens."""
    knobs = dict(temperature=0.8, top_k=40, top_p=0.9, min_p=0.02, typical_p=0.95)
    params = SamplingParams(strategy="sample", repetition_penalty=1.1, max_tokens=24, **knobs)
    torch.manual_seed(11)
    ours = generate(step, prompt, params, eos_token_ids=[2])
    torch.manual_seed(11)
    with torch.no_grad():
        out = model.generate(
            torch.tensor([prompt]), do_sample=True, max_new_tokens=24, eos_token_id=2,
            pad_token_id=0, repetition_penalty=1.1, **knobs,
        )  # fmt: skip
    assert with_eos(ours, 2) == out[0, len(prompt) :].tolist()


# --- stop strings, streaming, EOS, max_tokens on a toy model: next = last + 1 ---


def counting_step(input_ids: torch.Tensor) -> torch.Tensor:
    nxt = (input_ids[:, -1] + 1) % 26
    return F.one_hot(nxt, 26).float() * 10


def letters(ids) -> str:
    return "".join(chr(ord("a") + i) for i in ids)


def test_stop_string_excluded():
    params = SamplingParams(max_tokens=20, stop=["fg", "zz"])
    out = generate(counting_step, [0], params, detokenize=letters)
    assert (out.text, out.token_ids, out.finish_reason) == ("bcde", [1, 2, 3, 4], "stop")


def test_stop_string_inside_a_token():
    def chunky(ids):  # each token spells two letters
        return "".join(letters([i]) * 2 for i in ids)

    out = generate(counting_step, [0], SamplingParams(stop=["cd"]), detokenize=chunky)
    assert out.text == "bbc" and out.token_ids == [1] and out.finish_reason == "stop"


def test_stream_holds_back_possible_stop_start():
    params = SamplingParams(max_tokens=20, stop=["efx", "g"])
    deltas = list(stream(counting_step, [0], params, detokenize=letters))
    assert "".join(d.text for d in deltas) == "bcdef"
    assert deltas[-1].finish_reason == "stop"
    # "e" and then "ef" could start "efx": they are released only once it is clear
    assert [d.text for d in deltas[:-1]] == ["b", "c", "d"]
    assert deltas[-1] == Delta([4, 5], "ef", "stop")


def test_stream_tokens_without_detokenize_and_limits():
    deltas = list(stream(counting_step, [0], SamplingParams(max_tokens=5)))
    assert [t for d in deltas for t in d.token_ids] == [1, 2, 3, 4, 5]
    assert deltas[-1].finish_reason == "length"
    out = generate(counting_step, [0], SamplingParams(max_tokens=10), eos_token_ids=[4])
    assert out.token_ids == [1, 2, 3] and out.finish_reason == "eos"


def test_beam_applies_stop_strings():
    detok = letters
    params = SamplingParams(strategy="beam", num_beams=2, max_tokens=8)
    full = generate(counting_step, [0], params, detokenize=detok)
    assert full.text == "bcdefghi" and full.finish_reason == "length"
    cut = generate(counting_step, [0], replace(params, stop=("e",)), detokenize=detok)
    assert cut.text == "bcd" and cut.finish_reason == "stop" and cut.tree is not None


def test_stream_is_lazy():
    calls = []

    def counted(ids):
        calls.append(ids.shape[1])
        return counting_step(ids)

    first = next(stream(counted, [0], SamplingParams(max_tokens=50), detokenize=letters))
    assert first == Delta([1], "b", None) and len(calls) == 1


def test_clear_errors():
    with pytest.raises(ValueError, match="detokenize"):
        list(stream(counting_step, [0], SamplingParams(stop=["x"])))
    with pytest.raises(ValueError, match="step_with_hidden"):
        generate(counting_step, [0], SamplingParams(strategy="contrastive", top_k=2))
    with pytest.raises(ValueError, match="prompt_ids"):
        generate(counting_step, [], SamplingParams())

"""Sampling params and logits processors: hand-made logits with hand-computed answers, then
equivalence with transformers' own warpers (the reference implementation) on random logits."""

from __future__ import annotations

import math

import pytest
import torch

from hearth.engine.sampling import (
    SamplingParams,
    apply_presence_frequency_penalty,
    apply_repetition_penalty,
    apply_temperature,
    min_p_filter,
    sample_next,
    top_k_filter,
    top_p_filter,
    typical_filter,
)

INF = float("inf")
# probabilities 0.5, 0.3, 0.15, 0.05 as logits
PROBS = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
LOGITS = PROBS.log()


def kept(logits: torch.Tensor) -> list[int]:
    return torch.isfinite(logits[0]).nonzero().flatten().tolist()


# --- SamplingParams ---


def test_params_defaults_and_stop_normalised():
    p = SamplingParams(stop=["\n\n", "END"])
    assert p.stop == ("\n\n", "END") and p.strategy == "greedy" and p.is_greedy
    assert SamplingParams(stop="x").stop == ("x",)
    assert SamplingParams(strategy="sample", temperature=0).is_greedy
    with pytest.raises(AttributeError):
        p.temperature = 2.0  # frozen


@pytest.mark.parametrize(
    "field, value",
    [
        ("strategy", "nucleus"),
        ("temperature", -0.1),
        ("temperature", float("nan")),
        ("top_k", -1),
        ("top_k", 2.5),
        ("top_p", 0.0),
        ("top_p", 1.5),
        ("min_p", 1.1),
        ("typical_p", 0.0),
        ("repetition_penalty", 0.0),
        ("presence_penalty", 2.5),
        ("frequency_penalty", -3.0),
        ("num_beams", 0),
        ("length_penalty", float("inf")),
        ("early_stopping", "sometimes"),
        ("penalty_alpha", 1.5),
        ("max_tokens", 0),
        ("stop", ["ok", ""]),
        ("seed", -1),
        ("seed", True),
    ],
)
def test_params_reject_out_of_range(field, value):
    with pytest.raises(ValueError, match=f"SamplingParams.{field}"):
        SamplingParams(**{field: value})


def test_contrastive_needs_top_k():
    with pytest.raises(ValueError, match="top_k"):
        SamplingParams(strategy="contrastive", top_k=0)
    assert SamplingParams(strategy="contrastive", top_k=4, penalty_alpha=0.6).top_k == 4


# --- each filter on hand-made logits ---


def test_temperature_divides():
    out = apply_temperature(torch.tensor([[1.0, 2.0, -4.0]]), 2.0)
    assert torch.equal(out, torch.tensor([[0.5, 1.0, -2.0]]))
    with pytest.raises(ValueError):
        apply_temperature(LOGITS, 0.0)


def test_top_k_keeps_k_best_and_ties():
    logits = torch.tensor([[1.0, 3.0, 2.0, 0.0]])
    assert torch.equal(top_k_filter(logits, 2), torch.tensor([[-INF, 3.0, 2.0, -INF]]))
    assert kept(top_k_filter(torch.tensor([[1.0, 2.0, 2.0, 0.0]]), 1)) == [1, 2]
    assert torch.equal(top_k_filter(logits, 0), logits)  # off


@pytest.mark.parametrize(
    "p, expected",
    [(0.01, [0]), (0.4, [0]), (0.75, [0, 1]), (0.85, [0, 1, 2]), (0.99, [0, 1, 2, 3])],
)
def test_top_p_smallest_set_reaching_p(p, expected):
    # cumulative mass 0.5, 0.8, 0.95, 1.0
    assert kept(top_p_filter(LOGITS, p)) == expected


def test_top_p_order_does_not_matter():
    shuffled = LOGITS[:, [2, 0, 3, 1]]  # probs .15 .5 .05 .3
    assert kept(top_p_filter(shuffled, 0.75)) == [1, 3]


@pytest.mark.parametrize("min_p, expected", [(0.2, [0, 1, 2]), (0.7, [0]), (0.0, [0, 1, 2, 3])])
def test_min_p_relative_to_top(min_p, expected):
    # threshold = min_p * 0.5
    assert kept(min_p_filter(LOGITS, min_p)) == expected


@pytest.mark.parametrize("mass, expected", [(0.2, [1]), (0.5, [0, 1]), (0.9, [0, 1, 2])])
def test_typical_keeps_tokens_near_entropy(mass, expected):
    # H = 1.142 nats; surprisals .693 1.204 1.897 2.996 -> distances .449 .062 .755 1.853,
    # so the typical order is token 1 (p .3), 0, 2, 3 with cumulative mass .3 .8 .95 1
    h = -sum(p * math.log(p) for p in PROBS[0].tolist())
    assert h == pytest.approx(1.1422, abs=1e-4)
    assert kept(typical_filter(LOGITS, mass)) == expected


def test_repetition_penalty_divides_positive_multiplies_negative():
    logits = torch.tensor([[2.0, -2.0, 1.0, 0.5]])
    out = apply_repetition_penalty(logits, torch.tensor([[0, 1, 1]]), 2.0)
    assert torch.equal(out, torch.tensor([[1.0, -4.0, 1.0, 0.5]]))


def test_presence_once_frequency_per_count():
    logits = torch.ones(1, 4)
    out = apply_presence_frequency_penalty(logits, torch.tensor([[0, 0, 2]]), 0.5, 0.25)
    assert torch.allclose(out, torch.tensor([[0.0, 1.0, 0.25, 1.0]]))


def test_greedy_is_argmax_after_penalties():
    logits = torch.tensor([[2.0, 1.9, 0.0]])
    assert sample_next(logits, [[2]], SamplingParams()).tolist() == [0]
    penalised = SamplingParams(repetition_penalty=2.0)
    assert sample_next(logits, [[0]], penalised).tolist() == [1]


def test_sampling_respects_filters():
    params = SamplingParams(strategy="sample", top_k=2, seed=0)
    gen = params.generator()
    draws = {int(sample_next(LOGITS, [[3]], params, gen)) for _ in range(200)}
    assert draws == {0, 1}


def test_seed_reproducible_and_seeds_differ():
    logits = torch.zeros(1, 1000)

    def draw(seed: int) -> list[int]:
        params = SamplingParams(strategy="sample", seed=seed)
        gen = params.generator()
        return [int(sample_next(logits, [[0]], params, gen)) for _ in range(20)]

    assert draw(7) == draw(7)
    assert draw(7) != draw(8)


# --- the reference: transformers' own processors, random logits ---

tlp = pytest.importorskip("transformers.generation.logits_process")


def random_logits(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(6, 200, generator=g) * 3
    seen = torch.randint(0, 200, (6, 30), generator=g)
    return logits, seen


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.equal(torch.isinf(a), torch.isinf(b)) and torch.allclose(a, b)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(
    "ours, theirs",
    [
        (lambda x, s: apply_temperature(x, 0.7), tlp.TemperatureLogitsWarper(0.7)),
        (lambda x, s: top_k_filter(x, 10), tlp.TopKLogitsWarper(10)),
        (lambda x, s: top_p_filter(x, 0.9), tlp.TopPLogitsWarper(0.9)),
        (lambda x, s: top_p_filter(x, 0.3), tlp.TopPLogitsWarper(0.3)),
        (lambda x, s: min_p_filter(x, 0.05), tlp.MinPLogitsWarper(0.05)),
        (lambda x, s: min_p_filter(x, 0.5), tlp.MinPLogitsWarper(0.5)),
        (lambda x, s: typical_filter(x, 0.9), tlp.TypicalLogitsWarper(0.9)),
        (lambda x, s: typical_filter(x, 0.2), tlp.TypicalLogitsWarper(0.2)),
        (
            lambda x, s: apply_repetition_penalty(x, s, 1.3),
            tlp.RepetitionPenaltyLogitsProcessor(1.3),
        ),
    ],
    ids=["temp", "top_k", "top_p.9", "top_p.3", "min_p.05", "min_p.5", "typ.9", "typ.2", "rep"],
)
def test_matches_transformers(ours, theirs, seed):
    logits, seen = random_logits(seed)
    assert same(ours(logits.clone(), seen), theirs(seen, logits.clone()))


def test_full_chain_matches_transformers_order():
    logits, seen = random_logits(5)
    params = SamplingParams(
        strategy="sample", temperature=0.8, top_k=50, top_p=0.9, min_p=0.02, typical_p=0.95,
        repetition_penalty=1.2,
    )  # fmt: skip
    chain = tlp.LogitsProcessorList(
        [
            tlp.RepetitionPenaltyLogitsProcessor(1.2),
            tlp.TemperatureLogitsWarper(0.8),
            tlp.TopKLogitsWarper(50),
            tlp.TopPLogitsWarper(0.9),
            tlp.MinPLogitsWarper(0.02),
            tlp.TypicalLogitsWarper(0.95),
        ]
    )
    expected = chain(seen, logits.clone())
    from hearth.engine.sampling import apply_penalties, apply_warpers

    assert same(apply_warpers(apply_penalties(logits, seen, params), params), expected)

"""Sampling parameters and logits processors: how one next token is chosen from logits.

Hand-written on purpose (this is the product): each filter is a small pure function you can read.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

Strategy = Literal["greedy", "beam", "sample", "contrastive"]
STRATEGIES: tuple[str, ...] = ("greedy", "beam", "sample", "contrastive")


@dataclass(frozen=True)
class SamplingParams:
    """How to decode. Checks itself on creation; a bad value raises ValueError naming the field.

    Disabled values: top_k=0, top_p=1, min_p=0, typical_p=1, repetition_penalty=1,
    presence/frequency_penalty=0. temperature=0 with strategy "sample" means greedy.
    Penalties look at every token in the context (prompt + generated), as transformers does.
    num_beams/length_penalty/early_stopping are for "beam"; penalty_alpha/top_k for "contrastive".
    `constraint` keeps the output inside a hearth.structured Constraint (or anything its
    compile() takes: a JSON Schema, a regex, choices...): every strategy masks the tokens it
    forbids, through a Matcher made per generation (hearth.engine.masking.matcher_for).
    """

    strategy: Strategy = "greedy"
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    typical_p: float = 1.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    num_beams: int = 4
    length_penalty: float = 1.0
    early_stopping: bool | Literal["never"] = False
    penalty_alpha: float = 0.6
    max_tokens: int = 64
    stop: tuple[str, ...] = field(default_factory=tuple)
    seed: int | None = None
    constraint: Any = None

    def __post_init__(self) -> None:
        if self.constraint is not None:
            from hearth.structured import as_constraint

            object.__setattr__(self, "constraint", as_constraint(self.constraint))
        if isinstance(self.stop, str):
            object.__setattr__(self, "stop", (self.stop,))
        else:
            object.__setattr__(self, "stop", tuple(self.stop))
        checks: list[tuple[str, bool, str]] = [
            ("strategy", self.strategy in STRATEGIES, f"one of {', '.join(STRATEGIES)}"),
            ("temperature", _num(self.temperature) and self.temperature >= 0, "a number >= 0"),
            ("top_k", _int(self.top_k) and self.top_k >= 0, "an integer >= 0 (0 = off)"),
            ("top_p", _num(self.top_p) and 0 < self.top_p <= 1, "in (0, 1] (1 = off)"),
            ("min_p", _num(self.min_p) and 0 <= self.min_p <= 1, "in [0, 1] (0 = off)"),
            ("typical_p", _num(self.typical_p) and 0 < self.typical_p <= 1, "in (0, 1] (1 = off)"),
            (
                "repetition_penalty",
                _num(self.repetition_penalty) and self.repetition_penalty > 0,
                "a number > 0 (1 = off)",
            ),
            (
                "presence_penalty",
                _num(self.presence_penalty) and -2 <= self.presence_penalty <= 2,
                "in [-2, 2] (0 = off)",
            ),
            (
                "frequency_penalty",
                _num(self.frequency_penalty) and -2 <= self.frequency_penalty <= 2,
                "in [-2, 2] (0 = off)",
            ),
            ("num_beams", _int(self.num_beams) and self.num_beams >= 1, "an integer >= 1"),
            ("length_penalty", _num(self.length_penalty), "a finite number"),
            (
                "early_stopping",
                isinstance(self.early_stopping, bool) or self.early_stopping == "never",
                'True, False or "never"',
            ),
            (
                "penalty_alpha",
                _num(self.penalty_alpha) and 0 <= self.penalty_alpha <= 1,
                "in [0, 1]",
            ),
            ("max_tokens", _int(self.max_tokens) and self.max_tokens >= 1, "an integer >= 1"),
            (
                "stop",
                all(isinstance(s, str) and s for s in self.stop),
                "a list of non-empty strings",
            ),
            (
                "seed",
                self.seed is None or (_int(self.seed) and self.seed >= 0),
                "None or an integer >= 0",
            ),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise ValueError(
                    f"SamplingParams.{name} must be {expected}, got {getattr(self, name)!r}"
                )
        if self.strategy == "contrastive" and self.top_k < 1:
            raise ValueError(
                "SamplingParams.top_k must be >= 1 for strategy 'contrastive' "
                "(the number of candidates it compares; 4 is typical)"
            )

    @property
    def is_greedy(self) -> bool:
        """True when the next token is the argmax (greedy, or sampling at temperature 0)."""
        return self.strategy == "greedy" or (self.strategy == "sample" and self.temperature == 0)

    @property
    def is_plain_greedy(self) -> bool:
        """True when the next token is the argmax of the raw logits: greedy with no
        repetition, presence or frequency penalty to apply first."""
        return (
            self.is_greedy
            and self.repetition_penalty == 1.0
            and self.presence_penalty == 0.0
            and self.frequency_penalty == 0.0
        )

    def generator(self, device: torch.device | str = "cpu") -> torch.Generator | None:
        """A torch.Generator seeded with `seed` (None without a seed: global RNG)."""
        if self.seed is None:
            return None
        return torch.Generator(device=device).manual_seed(self.seed)


def _num(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


NEG_INF = float("-inf")


# --- penalties: they look at the tokens seen so far (prompt + generated), batch x seq ---


def apply_repetition_penalty(
    logits: torch.Tensor, seen_ids: torch.Tensor, penalty: float
) -> torch.Tensor:
    """CTRL-style: for each seen token divide a positive logit by `penalty`, multiply a negative."""
    if penalty == 1.0 or seen_ids.numel() == 0:
        return logits
    seen = _seen_mask(logits, seen_ids)
    penalized = torch.where(logits < 0, logits * penalty, logits / penalty)
    return torch.where(seen, penalized, logits)


def apply_presence_frequency_penalty(
    logits: torch.Tensor, seen_ids: torch.Tensor, presence: float, frequency: float
) -> torch.Tensor:
    """OpenAI-style: subtract `presence` once per seen token and `frequency` times its count."""
    if (presence == 0.0 and frequency == 0.0) or seen_ids.numel() == 0:
        return logits
    counts = torch.zeros_like(logits).scatter_add_(
        1, seen_ids, torch.ones_like(seen_ids, dtype=logits.dtype)
    )
    return logits - presence * (counts > 0).to(logits.dtype) - frequency * counts


def _seen_mask(logits: torch.Tensor, seen_ids: torch.Tensor) -> torch.Tensor:
    mask = torch.zeros_like(logits, dtype=torch.bool)
    return mask.scatter_(1, seen_ids, True)


# --- warpers: they reshape the distribution before sampling ---


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Divide logits by the temperature (< 1 sharpens, > 1 flattens)."""
    if temperature <= 0:
        raise ValueError("temperature must be > 0 here; temperature 0 means greedy (argmax)")
    return logits if temperature == 1.0 else logits / temperature


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k highest logits per row (ties with the k-th are kept); the rest become -inf."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, NEG_INF)


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus: keep the smallest set of most likely tokens whose probability sums to >= p.

    A token is kept when the mass of the tokens ranked above it is still < p, so the most
    likely token is always kept.
    """
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = sorted_logits.softmax(dim=-1)
    mass_above = probs.cumsum(dim=-1) - probs
    drop_sorted = mass_above >= p
    drop_sorted[..., 0] = False
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, NEG_INF)


def min_p_filter(logits: torch.Tensor, min_p: float) -> torch.Tensor:
    """Keep tokens whose probability is at least `min_p` times the top token's probability."""
    if min_p <= 0.0:
        return logits
    probs = logits.softmax(dim=-1)
    threshold = min_p * probs.amax(dim=-1, keepdim=True)
    return logits.masked_fill(probs < threshold, NEG_INF)


def typical_filter(logits: torch.Tensor, mass: float) -> torch.Tensor:
    """Locally typical sampling (Meister et al. 2022), as transformers' TypicalLogitsWarper.

    Rank tokens by how far their surprisal -log p is from the entropy H, then keep the
    closest ones until their probability reaches `mass` (ties with the last kept are kept).
    """
    if mass >= 1.0:
        return logits
    logp = logits.log_softmax(dim=-1)
    p = logp.exp()
    entropy = -(logp * p).nansum(dim=-1, keepdim=True)
    distance = (-logp - entropy).abs()
    sorted_distance, order = torch.sort(distance, dim=-1)
    cum = logits.gather(-1, order).softmax(dim=-1).cumsum(dim=-1)
    last = (cum < mass).sum(dim=-1, keepdim=True).clamp(max=logits.shape[-1] - 1)
    drop_sorted = sorted_distance > sorted_distance.gather(-1, last)
    drop_sorted[..., 0] = False
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, NEG_INF)


# --- putting it together ---


def apply_penalties(
    logits: torch.Tensor, seen_ids: torch.Tensor, params: SamplingParams
) -> torch.Tensor:
    """Repetition, then presence/frequency penalties (used by every strategy)."""
    logits = apply_repetition_penalty(logits, seen_ids, params.repetition_penalty)
    return apply_presence_frequency_penalty(
        logits, seen_ids, params.presence_penalty, params.frequency_penalty
    )


def apply_warpers(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """Temperature, top-k, top-p, min-p, typical: transformers' order for sampling."""
    logits = apply_temperature(logits, params.temperature)
    logits = top_k_filter(logits, params.top_k)
    logits = top_p_filter(logits, params.top_p)
    logits = min_p_filter(logits, params.min_p)
    return typical_filter(logits, params.typical_p)


def sample_next(
    logits: torch.Tensor,
    generated_ids: torch.Tensor | Sequence[Sequence[int]],
    params: SamplingParams,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Choose the next token for each row of `logits` (batch x vocab) -> LongTensor[batch].

    `generated_ids` are the tokens seen so far per row (the penalties look at them). Greedy
    (or temperature 0) takes the argmax after the penalties; sampling applies the warpers and
    draws from the softmax with `generator` (seeded: reproducible).
    """
    if logits.dim() != 2:
        raise ValueError(f"logits must be batch x vocab, got shape {tuple(logits.shape)}")
    seen = torch.as_tensor(generated_ids, dtype=torch.long, device=logits.device)
    if seen.dim() == 1:
        seen = seen.unsqueeze(0)
    logits = apply_penalties(logits.float(), seen, params)
    if params.is_greedy:
        return logits.argmax(dim=-1)
    probs = apply_warpers(logits, params).softmax(dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)

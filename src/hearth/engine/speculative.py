"""Speculative decoding: a cheap drafter guesses k tokens, the target checks all of them in ONE
forward of k+1 positions, and the KV cache is rolled back past the first wrong guess.

Hand-written on purpose (this is the product): it shows what speculation buys. Each target
forward now yields 1 + (accepted drafts) tokens instead of 1, and the output is unchanged:
at temperature 0 it is exactly the target's greedy output; above 0, rejection sampling (accept
a draft with min(1, p/q), else resample from norm(max(0, p - q))) keeps the target's
distribution. Two drafters:

- prompt lookup: the tokens that followed the most recent earlier occurrence of the last
  n-gram (strong for RAG, where answers copy the context). It is a point mass (q = 1 on the
  drafted token), so at T > 0 a draft is kept with probability p(draft).
- a draft model sharing the tokenizer, e.g. `truncated_draft(target, n_layers)`: the target's
  first layers plus its final norm and head (self-speculative), with its own KV cache.

Under a constraint (a hearth.structured Matcher) the target's distribution at each drafted
position is the masked one: the matcher takes the drafted tokens it allows (their masks are
computed on the way, before the target's forward, which then skips what it refused), is rolled
back past the first rejected one, then takes the correction; so the output is exactly the
constrained non-speculative output at temperature 0. A model drafter drafts under a fork of the
matcher, so it proposes only what the constraint allows.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np
import torch
from torch import nn

from hearth.engine.kv_cache import KVCache
from hearth.engine.masking import apply_allowed, mask_logits
from hearth.engine.model import LlamaModel
from hearth.engine.sampling import SamplingParams, apply_penalties, apply_warpers
from hearth.llm.prefix_store import common_prefix

if TYPE_CHECKING:
    from hearth.structured import Matcher

FinishReason = Literal["eos", "stop", "length"]


@dataclass
class Draft:
    """Up to k proposed tokens; `probs` (len(tokens) x vocab) is the drafter's distribution q
    for each, or None for a point mass (q = 1 on the drafted token)."""

    tokens: list[int]
    probs: torch.Tensor | None = None


class Drafter(Protocol):
    """Anything that guesses the next tokens of `context` (prompt + generated so far)."""

    def propose(
        self, context: Sequence[int], k: int, params: SamplingParams, gen: torch.Generator | None
    ) -> Draft: ...


@dataclass
class SpeculativeResult:
    """The generated tokens and how well the drafter guessed."""

    token_ids: list[int]
    finish_reason: FinishReason
    draft_tokens_proposed: int = 0
    draft_tokens_accepted: int = 0
    target_forwards: int = 0  # verify steps after the prefill

    @property
    def acceptance_rate(self) -> float:
        """Accepted / proposed draft tokens (0 when nothing was proposed)."""
        return self.draft_tokens_accepted / max(self.draft_tokens_proposed, 1)

    @property
    def tokens_per_forward(self) -> float:
        return len(self.token_ids) / max(self.target_forwards, 1)


# ---- drafters ---------------------------------------------------------------------------------


def lookup_draft(context: Sequence[int], k: int, max_ngram: int = 3) -> list[int]:
    """The tokens after the most recent earlier occurrence of the last n-gram, n from
    `max_ngram` down to 1; [] when no n-gram recurs."""
    ctx = list(context)
    for n in range(min(max_ngram, len(ctx) - 1), 0, -1):
        pattern = ctx[-n:]
        for start in range(len(ctx) - n - 1, -1, -1):
            if ctx[start : start + n] == pattern:
                return ctx[start + n : start + n + k]
    return []


@dataclass
class PromptLookupDrafter:
    """Prompt-lookup decoding: drafts copied from the context itself, no model at all."""

    max_ngram: int = 3

    def propose(
        self, context: Sequence[int], k: int, params: SamplingParams, gen: torch.Generator | None
    ) -> Draft:
        return Draft(lookup_draft(context, k, self.max_ngram))


class ModelDrafter:
    """A small model drafting token by token with its own KV cache, kept in step with the
    context by dropping whatever no longer matches (rejected drafts) and feeding the rest.
    Given a `matcher` (a fork: it is advanced) it drafts only what the constraint allows."""

    masks_drafts = True  # propose() takes a matcher

    def __init__(self, model: LlamaModel, max_len: int = 4096) -> None:
        self.model = model
        self.cache: KVCache = model.new_cache(max_len)
        self.cached: list[int] = []  # the tokens whose K/V the cache holds

    def _sync(self, context: Sequence[int]) -> torch.Tensor:
        """Roll the cache back to its common prefix with `context`, feed the rest (at least the
        last token); return the next-token logits."""
        keep = common_prefix(self.cached, context)
        keep = min(keep, len(context) - 1)
        self.cache.truncate(keep)
        self.cached = list(context)
        return self._feed(list(context[keep:]))

    def _feed(self, ids: list[int]) -> torch.Tensor:
        x = torch.tensor(ids, device=self.model.embed_tokens.weight.device)
        return self.model(x, kv_cache=self.cache, last_only=True)[-1].float()

    def propose(
        self,
        context: Sequence[int],
        k: int,
        params: SamplingParams,
        gen: torch.Generator | None,
        matcher: Matcher | None = None,
    ) -> Draft:
        seen = list(context)
        logits = self._sync(context)
        tokens: list[int] = []
        probs: list[torch.Tensor] = []
        for i in range(k):
            p = next_token_probs(mask_logits(logits, matcher), seen, params)
            token = _choose(p, params, gen)
            tokens.append(token)
            probs.append(p)
            seen.append(token)
            if matcher is not None and (not matcher.advance(token) or matcher.done):
                break  # complete: the target adds nothing after it
            if i + 1 < k:
                logits = self._feed([token])
                self.cached.append(token)
        return Draft(tokens, None if params.is_greedy or not probs else torch.stack(probs))


@dataclass
class DraftMasks:
    """What a constraint allows at each position of a draft, found by walking it through the
    matcher: `allowed[i]` (a bool per token) after the first i drafted tokens. The walk stops at
    the first drafted token the constraint refuses (taken = its index: the target's choice there
    rejects it), or where the constraint is complete (`complete`: no position after the taken
    tokens, nothing follows them). The matcher is left after the `taken` tokens."""

    allowed: np.ndarray  # positions x tokenizer vocabulary
    taken: int
    complete: bool


def draft_masks(matcher: Matcher, tokens: Sequence[int]) -> DraftMasks:
    """Walk `tokens` through `matcher` (see DraftMasks); the caller rolls back what the target
    rejects."""
    rows: list[np.ndarray] = []
    for i in range(len(tokens) + 1):
        if matcher.done:
            return DraftMasks(np.stack(rows), i, True)
        rows.append(matcher.allowed())
        if i == len(tokens) or matcher.advance_many([tokens[i]]) != 1:
            return DraftMasks(np.stack(rows), i, False)
    raise AssertionError("unreachable")


def truncated_draft(model: LlamaModel, n_layers: int) -> LlamaModel:
    """A self-speculative draft: the target's first `n_layers` layers, then its final norm and
    lm_head. Shares every weight with the target (no extra memory beyond its own KV cache)."""
    if not 1 <= n_layers <= model.config.n_layers:
        raise ValueError(f"n_layers must be in [1, {model.config.n_layers}], got {n_layers}")
    draft = copy.copy(model)
    draft._modules = dict(model._modules)  # its own module table; the modules are shared
    draft.layers = nn.ModuleList(list(model.layers[:n_layers]))
    draft.config = replace(model.config, n_layers=n_layers)
    return draft


# ---- the target's side: distributions and the accept / reject rule --------------------------


def next_token_probs(
    logits: torch.Tensor, seen: Sequence[int], params: SamplingParams
) -> torch.Tensor:
    """The distribution decoding samples from (vocab,): penalties then warpers, then softmax;
    for greedy, a one-hot on the argmax."""
    seen_ids = torch.tensor([list(seen)], dtype=torch.long, device=logits.device)
    logits = apply_penalties(logits[None].float(), seen_ids, params)
    if params.is_greedy:
        return torch.nn.functional.one_hot(logits[0].argmax(), logits.shape[-1]).float()
    return apply_warpers(logits, params).softmax(dim=-1)[0]


def _choose(probs: torch.Tensor, params: SamplingParams, gen: torch.Generator | None) -> int:
    if params.is_greedy:
        return int(probs.argmax())
    return int(torch.multinomial(probs, 1, generator=gen))


def _uniform(gen: torch.Generator | None, device: torch.device) -> float:
    return float(torch.rand((), generator=gen, device=device))


def verify(
    logits: torch.Tensor,
    context: Sequence[int],
    draft: Draft,
    params: SamplingParams,
    gen: torch.Generator | None,
    masks: DraftMasks | None = None,
) -> tuple[int, int | None]:
    """Check `draft` against the target's logits (len(draft) + 1 x vocab, the first predicting
    the token after `context`). Returns (drafts accepted, the token the target adds after them:
    the correction at the first rejection, or a bonus token when all are accepted).

    Under a constraint, `masks` (draft_masks) masks each position's logits; only positions up
    to the first refused draft are looked at (rows past it may be missing), and when the
    constraint is complete after the accepted drafts no token is added (None)."""
    if masks is not None:
        n = len(masks.allowed)
        logits = apply_allowed(logits[:n], masks.allowed)
        probs = None if draft.probs is None else draft.probs[:n]
        draft = Draft(draft.tokens[:n], probs)
        if masks.complete:  # n rows for n drafts: every one is allowed, nothing follows
            return _verify(logits, context, draft, params, gen, bonus=False)
    return _verify(logits, context, draft, params, gen)


def _verify(
    logits: torch.Tensor,
    context: Sequence[int],
    draft: Draft,
    params: SamplingParams,
    gen: torch.Generator | None,
    bonus: bool = True,
) -> tuple[int, int | None]:
    if params.is_plain_greedy:
        # every position's choice at once: the argmax of each row
        best = logits[: len(draft.tokens) + 1].argmax(dim=-1).tolist()
        for i, token in enumerate(draft.tokens):
            if token != best[i]:
                return i, best[i]
        return len(draft.tokens), best[len(draft.tokens)] if bonus else None
    seen = list(context)
    for i, token in enumerate(draft.tokens):
        p = next_token_probs(logits[i], seen, params)
        if params.is_greedy:
            if token != int(p.argmax()):
                return i, int(p.argmax())
        else:
            q = _draft_q(draft, i, p)
            if _uniform(gen, p.device) >= min(1.0, float(p[token] / q[token])):
                return i, _residual_sample(p, q, params, gen)
        seen.append(token)
    if not bonus:
        return len(draft.tokens), None
    extra = next_token_probs(logits[len(draft.tokens)], seen, params)
    return len(draft.tokens), _choose(extra, params, gen)


def _draft_q(draft: Draft, i: int, p: torch.Tensor) -> torch.Tensor:
    if draft.probs is not None:
        return draft.probs[i].to(p.device)
    return torch.nn.functional.one_hot(torch.tensor(draft.tokens[i]), p.shape[-1]).to(p)


def _residual_sample(
    p: torch.Tensor, q: torch.Tensor, params: SamplingParams, gen: torch.Generator | None
) -> int:
    """After a rejection: sample from norm(max(0, p - q)), the mass the draft under-covered."""
    residual = (p - q).clamp(min=0)
    if float(residual.sum()) <= 0:  # p == q up to rounding: any sample from p is right
        residual = p
    return _choose(residual / residual.sum(), params, gen)


# ---- the loop ---------------------------------------------------------------------------------


@torch.inference_mode()
def speculative_generate(
    model: LlamaModel,
    prompt_ids: Sequence[int],
    drafter: Drafter | None = None,
    params: SamplingParams | None = None,
    k: int = 4,
    eos_token_ids: Sequence[int] = (),
    matcher: Matcher | None = None,
) -> SpeculativeResult:
    """Generate with speculation; `drafter` defaults to prompt lookup; `matcher` (a fresh one,
    hearth.engine.masking.matcher_for) keeps the output inside params.constraint and ends it,
    "stop", once the constraint is complete.

    The target's cache always holds the context except its last token; each step feeds that
    token plus the k drafts (k + 1 positions, one forward), then truncates the cache to the
    accepted prefix.
    """
    params = params or SamplingParams()
    drafter = drafter or PromptLookupDrafter()
    if not prompt_ids:
        raise ValueError("speculative_generate needs at least one prompt token")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if params.constraint is not None and matcher is None:
        raise ValueError(
            "SamplingParams.constraint needs a `matcher` for this generation: "
            "hearth.engine.masking.matcher_for(params, tokenizer)"
        )
    gen = params.generator(model.embed_tokens.weight.device)
    context = list(prompt_ids)
    cache = model.new_cache(len(context) + params.max_tokens + k + 1)
    _forward(model, cache, context[:-1])
    result = SpeculativeResult([], "length")
    while len(result.token_ids) < params.max_tokens:
        if matcher is not None and matcher.done:  # complete before anything was generated
            result.finish_reason = "stop"
            break
        room = params.max_tokens - len(result.token_ids) - 1
        draft = _propose(drafter, context, min(k, room), params, gen, matcher)
        masks = draft_masks(matcher, draft.tokens) if matcher is not None else None
        fed = draft.tokens if masks is None else draft.tokens[: masks.taken]
        logits = _forward(model, cache, [context[-1], *fed], all_positions=True)
        accepted, extra = verify(logits, context, draft, params, gen, masks)
        cache.truncate(len(context) + accepted)  # context[:-1] + last + accepted drafts
        _record(result, draft, accepted)
        new = draft.tokens[:accepted] + ([] if extra is None else [extra])
        if matcher is not None:  # back to the accepted drafts, then the target's own token
            matcher.rollback(masks.taken - accepted)
            if extra is not None:
                matcher.advance(extra)
        # the constraint is complete after the last new token (when they all fit)
        complete = (
            matcher is not None
            and matcher.done
            and len(result.token_ids) + len(new) <= params.max_tokens
        )
        over = _extend(result, context, new, params, eos_token_ids)
        if complete and result.finish_reason == "length":
            result.finish_reason, over = "stop", True
        if over:
            break
    return result


def _propose(
    drafter: Drafter,
    context: Sequence[int],
    k: int,
    params: SamplingParams,
    gen: torch.Generator | None,
    matcher: Matcher | None,
) -> Draft:
    if k <= 0:
        return Draft([])
    if matcher is not None and getattr(drafter, "masks_drafts", False):
        return drafter.propose(context, k, params, gen, matcher=matcher.fork())
    return drafter.propose(context, k, params, gen)


def _forward(
    model: LlamaModel, cache: KVCache, ids: list[int], all_positions: bool = False
) -> torch.Tensor:
    if not ids:
        return torch.empty(0)
    x = torch.tensor(ids, device=model.embed_tokens.weight.device)
    return model(x, kv_cache=cache, last_only=not all_positions)


def _record(result: SpeculativeResult, draft: Draft, accepted: int) -> None:
    result.target_forwards += 1
    result.draft_tokens_proposed += len(draft.tokens)
    result.draft_tokens_accepted += accepted


def _extend(
    result: SpeculativeResult,
    context: list[int],
    new: list[int],
    params: SamplingParams,
    eos_token_ids: Sequence[int],
) -> bool:
    """Append `new` tokens (stopping at EOS or max_tokens); True when generation is over."""
    for token in new:
        if token in eos_token_ids:
            result.finish_reason = "eos"
            return True
        result.token_ids.append(token)
        context.append(token)
        if len(result.token_ids) >= params.max_tokens:
            return True
    return False


@torch.inference_mode()
def cached_greedy(
    model: LlamaModel, prompt_ids: Sequence[int], max_tokens: int, eos_token_ids: Sequence[int] = ()
) -> list[int]:
    """Plain cached greedy decoding, one target forward per token: the baseline speculation
    must reproduce exactly and beat on speed."""
    cache = model.new_cache(len(prompt_ids) + max_tokens + 1)
    logits = _forward(model, cache, list(prompt_ids))[-1]
    out: list[int] = []
    for _ in range(max_tokens):
        token = int(logits.argmax())
        if token in eos_token_ids:
            break
        out.append(token)
        logits = _forward(model, cache, [token])[-1]
    return out

"""Generation loops: greedy/sampling with stop strings and streaming, beam search, contrastive.

Hand-written on purpose (this is the product): each strategy is a short loop you can read, and
beam search records its whole tree so it can be drawn. Works against any `step` callable.
Under a constraint (SamplingParams.constraint) every strategy masks each step's logits with a
hearth.structured Matcher (one per beam in beam search) and ends, "stop", once it is complete.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, NamedTuple, Protocol

import torch
import torch.nn.functional as F

from hearth.engine.masking import mask_logits, mask_rows
from hearth.engine.sampling import SamplingParams, apply_penalties, sample_next

if TYPE_CHECKING:
    from hearth.structured import Matcher


class StepFn(Protocol):
    """The model as decoding sees it: ids (batch x seq) -> next-token logits (batch x vocab)."""

    def __call__(self, input_ids: torch.Tensor) -> torch.Tensor: ...


class HiddenStepFn(Protocol):
    """Like StepFn, also returning the last layer's hidden states (batch x seq x dim)."""

    def __call__(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


Detokenize = Callable[[Sequence[int]], str]
FinishReason = Literal["eos", "stop", "length"]


class Delta(NamedTuple):
    """One streamed piece: the tokens released, their text, and why it ended (last piece only)."""

    token_ids: list[int]
    text: str
    finish_reason: FinishReason | None = None


@dataclass(frozen=True)
class BeamNode:
    """One candidate continuation considered by beam search at one step."""

    id: int
    step: int
    token_id: int
    prob: float  # p(token | parent beam), after penalties
    score: float  # sum of log-probs of the beam up to and including this token
    parent: int | None  # parent node id; None = the prompt
    status: Literal["kept", "finished", "pruned"]


@dataclass
class BeamTree:
    """Every candidate beam search looked at, step by step, enough to draw the search."""

    prompt_ids: list[int]
    nodes: list[BeamNode] = field(default_factory=list)
    finished: list[tuple[int, float]] = field(default_factory=list)  # (node id, final score)

    @property
    def best(self) -> int:
        """Node id ending the best finished hypothesis."""
        return self.finished[0][0]

    def path(self, node_id: int) -> list[BeamNode]:
        """Nodes from the first generated token down to `node_id`."""
        out: list[BeamNode] = []
        current: int | None = node_id
        while current is not None:
            node = self.nodes[current]
            out.append(node)
            current = node.parent
        return out[::-1]

    def children(self, node_id: int | None) -> list[BeamNode]:
        return [n for n in self.nodes if n.parent == node_id]


class BeamResult(NamedTuple):
    """Beam search's answer: the best tokens (EOS excluded), why it ended, the whole tree."""

    token_ids: list[int]
    finish_reason: FinishReason
    tree: BeamTree


@dataclass
class Generation:
    """The result: tokens (EOS and stop text excluded), text, why it ended, beam tree if any."""

    token_ids: list[int]
    text: str
    finish_reason: FinishReason
    tree: BeamTree | None = None


# --- the public entry points ---


def generate(
    step: StepFn | None,
    prompt_ids: Sequence[int],
    params: SamplingParams,
    *,
    step_with_hidden: HiddenStepFn | None = None,
    eos_token_ids: Sequence[int] = (),
    detokenize: Detokenize | None = None,
    matcher: Matcher | None = None,
) -> Generation:
    """Run one prompt to the end with the strategy in `params`; under a constraint, `matcher`
    is this generation's fresh Matcher (hearth.engine.masking.matcher_for)."""
    if params.strategy == "beam":
        if step is None:
            raise ValueError("beam search needs `step` (input ids -> logits)")
        _check_matcher(params, matcher)
        tokens, finish, tree = beam_search(
            step, prompt_ids, params, eos_token_ids=eos_token_ids, matcher=matcher
        )
        deltas = list(_release(iter(tokens), params, detokenize, eos_token_ids=()))
        reason = deltas[-1].finish_reason if deltas else "length"
        if reason != "stop":
            reason = finish
        return Generation(*_join(deltas), reason, tree)
    deltas = list(
        stream(
            step,
            prompt_ids,
            params,
            step_with_hidden=step_with_hidden,
            eos_token_ids=eos_token_ids,
            detokenize=detokenize,
            matcher=matcher,
        )
    )
    ids, text = _join(deltas)
    return Generation(ids, text, deltas[-1].finish_reason or "length")


def stream(
    step: StepFn | None,
    prompt_ids: Sequence[int],
    params: SamplingParams,
    *,
    step_with_hidden: HiddenStepFn | None = None,
    eos_token_ids: Sequence[int] = (),
    detokenize: Detokenize | None = None,
    matcher: Matcher | None = None,
) -> Iterator[Delta]:
    """Yield Deltas as tokens are decided; text that may start a stop string is held back.

    Beam search cannot know its best beam before the end, so it yields one Delta at the end.
    """
    if params.stop and detokenize is None:
        raise ValueError("SamplingParams.stop needs a `detokenize` callback to see the text")
    if not prompt_ids:
        raise ValueError("prompt_ids is empty: give at least one token (e.g. BOS)")
    _check_matcher(params, matcher)
    if params.strategy == "beam":
        result = generate(
            step,
            prompt_ids,
            params,
            eos_token_ids=eos_token_ids,
            detokenize=detokenize,
            matcher=matcher,
        )
        yield Delta(result.token_ids, result.text, result.finish_reason)
        return
    if params.strategy == "contrastive":
        if step_with_hidden is None:
            raise ValueError("contrastive search needs `step_with_hidden` (ids -> logits, hidden)")
        tokens = contrastive_tokens(step_with_hidden, prompt_ids, params, matcher)
    else:
        if step is None:
            raise ValueError(f"strategy {params.strategy!r} needs `step` (input ids -> logits)")
        tokens = sampled_tokens(step, prompt_ids, params, matcher)
    done = None if matcher is None else (lambda: matcher.done)
    yield from _release(tokens, params, detokenize, eos_token_ids, done)


def _check_matcher(params: SamplingParams, matcher: Matcher | None) -> None:
    if params.constraint is not None and matcher is None:
        raise ValueError(
            "SamplingParams.constraint needs a `matcher` for this generation: "
            "hearth.engine.masking.matcher_for(params, tokenizer)"
        )


# --- greedy and sampling ---


def sampled_tokens(
    step: StepFn, prompt_ids: Sequence[int], params: SamplingParams, matcher: Matcher | None = None
) -> Iterator[int]:
    """Endless greedy/sampled token ids (the caller stops): the constraint's mask, penalties,
    warpers, argmax or draw; `matcher` takes each token before it is yielded."""
    ids = torch.tensor([list(prompt_ids)], dtype=torch.long)
    generator = params.generator()
    while True:
        token = sample_next(mask_logits(step(ids), matcher), ids, params, generator)
        if matcher is not None:
            matcher.advance(int(token[0]))
        yield int(token[0])
        ids = torch.cat([ids, token.view(1, 1)], dim=1)


# --- contrastive search (Su et al. 2022) ---


def contrastive_tokens(
    step_with_hidden: HiddenStepFn,
    prompt_ids: Sequence[int],
    params: SamplingParams,
    matcher: Matcher | None = None,
) -> Iterator[int]:
    """Endless contrastive-search token ids.

    Among the top_k most likely tokens v pick argmax of
    (1 - alpha) * p(v | x) - alpha * max_j cos(h_v, h_j), where h_j are the context's hidden
    states: confident tokens that do not repeat what the context already says. Under a
    constraint the candidates are the top_k it allows.
    """
    alpha, k = params.penalty_alpha, params.top_k
    ids = torch.tensor([list(prompt_ids)], dtype=torch.long)
    logits, hidden = step_with_hidden(ids)
    while True:
        logits = mask_logits(logits, matcher)
        probs = apply_penalties(logits.float(), ids, params).softmax(dim=-1)
        top_probs, top_ids = probs[0].topk(min(k, probs.shape[-1]))
        if matcher is not None:  # fewer allowed tokens than k: the rest are not candidates
            keep = torch.isfinite(logits[0, top_ids])
            top_probs, top_ids = top_probs[keep], top_ids[keep]
        candidates = torch.cat([ids.expand(len(top_ids), -1), top_ids.view(-1, 1)], dim=1)
        cand_logits, cand_hidden = step_with_hidden(candidates)
        context = F.normalize(hidden[0].float(), dim=-1)  # seq x dim
        proposed = F.normalize(cand_hidden[:, -1].float(), dim=-1)  # k x dim
        degeneration = (proposed @ context.T).max(dim=-1).values
        scores = (1.0 - alpha) * top_probs - alpha * degeneration
        best = int(scores.argmax())
        if matcher is not None:
            matcher.advance(int(top_ids[best]))
        yield int(top_ids[best])
        ids = candidates[best : best + 1]
        logits, hidden = cand_logits[best : best + 1], cand_hidden[best : best + 1]


# --- beam search (transformers' scoring and stopping rules) ---


def beam_search(
    step: StepFn,
    prompt_ids: Sequence[int],
    params: SamplingParams,
    *,
    eos_token_ids: Sequence[int] = (),
    matcher: Matcher | None = None,
) -> BeamResult:
    """Beam search for one prompt -> best tokens without EOS, finish reason, full tree.

    Each step scores every (beam, token) by the beam's summed log-probs, looks at the top
    2 * num_beams (1 + #eos if more), keeps the best num_beams that did not end as running
    beams, and moves ended ones (EOS or max length), scored sum / length ** length_penalty,
    into the num_beams best finished hypotheses. Stopping follows transformers' heuristic.

    Under a constraint each beam has its own Matcher (forked from `matcher` as beams split):
    its row's log-probs are masked before the top-k (the model's probabilities stay unscaled,
    as with transformers' logits processors), a beam whose constraint is complete ends like
    one at EOS, and a candidate the constraint forbids (only when fewer tokens are allowed
    than candidates are looked at) is dead: ranked last, never finished.
    """
    nb, lp, early = params.num_beams, params.length_penalty, params.early_stopping
    eos = torch.tensor(sorted(set(eos_token_ids)), dtype=torch.long)
    n_cand = max(2, 1 + len(eos)) * nb
    prompt_len = len(prompt_ids)
    max_len = prompt_len + params.max_tokens
    big = -1.0e9

    running = torch.tensor([list(prompt_ids)] * nb, dtype=torch.long)
    running_scores = torch.full((nb,), big)
    running_scores[0] = 0.0
    running_nodes: list[int | None] = [None] * nb
    fin_seqs: list[torch.Tensor | None] = [None] * nb
    fin_scores = torch.full((nb,), big)
    fin_done = torch.zeros(nb, dtype=torch.bool)
    fin_nodes: list[int | None] = [None] * nb
    can_improve = True
    tree = BeamTree(list(prompt_ids))
    top_nb = torch.arange(n_cand) < nb
    cur_len = prompt_len
    # constrained: one matcher per running beam; None marks a dead beam
    beams: list[Matcher | None] | None = None
    alive = torch.ones(n_cand, dtype=torch.bool)
    if matcher is not None:
        root = matcher.fork()  # to tell at the end whether the best one completed it
        beams = [matcher] + [matcher.fork() for _ in range(nb - 1)]
    dead = 2 * big  # below every live score

    while True:
        logp = F.log_softmax(step(running).float(), dim=-1)
        logp = apply_penalties(logp, running, params)
        if beams is not None:
            logp = mask_rows(logp, beams, [m is None for m in beams])
        vocab = logp.shape[-1]
        acc = (logp + running_scores[:, None]).view(-1)
        if beams is not None:
            acc = acc.clamp(min=dead)
        cand_scores, flat = acc.topk(n_cand)
        parent, token = flat // vocab, flat % vocab
        cand = torch.cat([running[parent], token[:, None]], dim=1)
        ended = torch.isin(token, eos) | (cur_len + 1 >= max_len)
        if beams is not None:
            # a candidate grown from a placeholder beam (score ~big) is no hypothesis either
            real = cand_scores > big / 2
            cand_beams = _advance_beams(beams, parent.tolist(), token.tolist(), real)
            alive = torch.tensor([m is not None for m in cand_beams])
            ended |= torch.tensor([m is not None and m.done for m in cand_beams])

        # running beams for the next step: the best that did not end
        run_scores = cand_scores + ended.float() * big
        next_idx = run_scores.topk(nb).indices

        # finished hypotheses: merge newly ended top-num_beams candidates, keep the best nb
        just_done = ended & top_nb & alive
        fin_cand = cand_scores / ((cur_len + 1 - prompt_len) ** lp)
        fin_cand = fin_cand + float(bool(fin_done.all()) and early is True) * big
        fin_cand = fin_cand + float(not can_improve) * big
        fin_cand = fin_cand + (~just_done).float() * big
        merged = torch.cat([fin_scores, fin_cand])
        keep = merged.topk(nb).indices

        # record the tree before reshuffling
        ids = [len(tree.nodes) + j for j in range(n_cand)]
        entered = {int(i) - nb for i in keep if int(i) >= nb and bool(just_done[int(i) - nb])}
        kept = {int(i) for i in next_idx if not bool(ended[int(i)])}
        for j in range(n_cand):
            p = int(parent[j])
            status = "finished" if j in entered else "kept" if j in kept else "pruned"
            tree.nodes.append(
                BeamNode(
                    id=ids[j],
                    step=cur_len - prompt_len,
                    token_id=int(token[j]),
                    prob=float(torch.exp(cand_scores[j] - running_scores[p])) * bool(alive[j]),
                    score=float(cand_scores[j]),
                    parent=running_nodes[p],
                    status=status,
                )
            )

        merged_seqs = fin_seqs + [cand[j] for j in range(n_cand)]
        merged_nodes = fin_nodes + ids
        merged_done = torch.cat([fin_done, just_done])
        fin_seqs = [merged_seqs[int(i)] for i in keep]
        fin_nodes = [merged_nodes[int(i)] for i in keep]
        fin_scores, fin_done = merged[keep], merged_done[keep]

        running = cand[next_idx]
        running_scores = run_scores[next_idx]
        running_nodes = [ids[int(i)] for i in next_idx]
        if beams is not None:
            beams = [cand_beams[int(i)] for i in next_idx]
        cur_len += 1

        # can a running beam still beat the worst finished one? (transformers' heuristic)
        if early == "never" and lp > 0.0:
            best_len = max_len - prompt_len
        else:
            best_len = cur_len - prompt_len
        best_running = running_scores[0] / (best_len**lp)
        worst_finished = torch.where(fin_done, fin_scores.min(), torch.tensor(big))
        can_improve = can_improve and bool((best_running > worst_finished).any())
        all_full = bool(fin_done.all()) and early is True
        if not can_improve or all_full or bool(ended.all()):
            break
        if beams is not None and all(m is None for m in beams):
            break  # every running beam is dead: nothing left the constraint allows

    tree.finished = [
        (node, float(score))
        for node, score, done in zip(fin_nodes, fin_scores, fin_done, strict=True)
        if node is not None and bool(done)
    ]
    best = fin_seqs[0]
    if best is None:
        raise RuntimeError("beam search ended without a finished hypothesis")
    tokens = best[prompt_len:].tolist()
    if tokens and len(eos) and tokens[-1] in eos.tolist():
        return BeamResult(tokens[:-1], "eos", tree)
    if matcher is not None:
        root.advance_many(tokens)
        if root.done:
            return BeamResult(tokens, "stop", tree)
    return BeamResult(tokens, "length", tree)


def _advance_beams(
    beams: Sequence[Matcher | None], parents: list[int], tokens: list[int], live: torch.Tensor
) -> list[Matcher | None]:
    """Each candidate's own matcher: its parent beam's, forked, after its token; None for a
    dead candidate (a dead parent, or a token the constraint forbids)."""
    out: list[Matcher | None] = []
    for parent, token, ok in zip(parents, tokens, live.tolist(), strict=True):
        m = beams[parent]
        if m is None or not ok:
            out.append(None)
            continue
        m = m.fork()
        out.append(m if m.advance(token) else None)
    return out


# --- releasing tokens and text: EOS, max_tokens, stop strings ---


def _release(
    tokens: Iterator[int],
    params: SamplingParams,
    detokenize: Detokenize | None,
    eos_token_ids: Sequence[int],
    done: Callable[[], bool] | None = None,
) -> Iterator[Delta]:
    """Turn a token stream into Deltas, ending at EOS, a stop string, max_tokens, or ("stop")
    when `done()` says so after a token (a constraint that is complete)."""
    eos = set(eos_token_ids)
    stops = params.stop
    ids: list[int] = []
    ends: list[int] = []  # text length after each token
    text = ""
    sent_tokens = sent_chars = 0
    reason: FinishReason = "length"

    def cut(upto: int, finish: FinishReason | None) -> Delta:
        nonlocal sent_tokens, sent_chars
        n = sent_tokens
        while n < len(ids) and ends[n] <= upto:
            n += 1
        delta = Delta(
            ids[sent_tokens:n], text[sent_chars:upto] if upto > sent_chars else "", finish
        )
        sent_tokens, sent_chars = n, max(sent_chars, upto)
        return delta

    for count, token in enumerate(tokens, start=1):
        if token in eos:
            reason = "eos"
            break
        ids.append(token)
        if detokenize is None:
            ends.append(0)
            if done is not None and done():
                reason = "stop"
                break
            if count >= params.max_tokens:
                break
            yield cut(0, None)
            continue
        text = detokenize(ids)
        ends.append(len(text))
        hits = [i for i in (text.find(s) for s in stops) if i >= 0]
        if hits:
            yield cut(min(hits), "stop")
            return
        if done is not None and done():
            reason = "stop"
            break
        if count >= params.max_tokens:
            break
        delta = cut(len(text) - _holdback(text, stops), None)
        if delta.token_ids or delta.text:
            yield delta
    yield cut(len(text), reason)


def _holdback(text: str, stops: Sequence[str]) -> int:
    """How many trailing chars to keep back: a possible start of a stop string, or broken UTF-8."""
    hold = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), hold, -1):
            if text.endswith(s[:k]):
                hold = k
                break
    while hold < len(text) and text[len(text) - hold - 1] == "\ufffd":
        hold += 1
    return hold


def _join(deltas: Sequence[Delta]) -> tuple[list[int], str]:
    return [t for d in deltas for t in d.token_ids], "".join(d.text for d in deltas)

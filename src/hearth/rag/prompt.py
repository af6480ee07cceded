"""The grounded prompt: numbered passages and the question, trimmed to fit the context window.

Short and plain on purpose: the default model has 135M parameters and follows short
instructions best. Trimming drops whole passages from the lowest-ranked end, never text inside.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hearth.errors import ContextWindowError
from hearth.rag.citations import strip_markers
from hearth.types import ChatModel, Message, ScoredChunk

# Chosen among five layouts by answers-right on ten hand-written question/passage pairs with
# SmolLM2-135M (see the RAG notes): instruction and passages in the system turn, the question
# alone in the user turn did best.
INSTRUCTION = (
    "Answer the question using only the numbered passages. "
    "Cite the passage you used like [1]. "
    "If the passages do not contain the answer, say you do not know."
)


@dataclass
class GroundedPrompt:
    messages: list[Message]
    passages: list[ScoredChunk]  # the passages in the prompt, numbered [1].. in this order
    dropped_passages: int  # lowest-ranked passages left out so the prompt fits
    dropped_history: int  # oldest history messages left out so the prompt fits
    prompt_tokens: int


def passage_label(hit: ScoredChunk) -> str:
    """Source file name, heading path and page, e.g. "guide.md > Install > Linux, page 3"."""
    chunk = hit.chunk
    parts = [Path(chunk.source).name or chunk.source or "unknown source", *chunk.headings]
    label = " > ".join(p for p in parts if p)
    if chunk.page is not None:
        label += f", page {chunk.page}"
    return label


def format_passages(passages: list[ScoredChunk]) -> str:
    return "\n\n".join(
        f"[{n}] ({passage_label(hit)})\n{hit.chunk.text.strip()}"
        for n, hit in enumerate(passages, start=1)
    )


def build_messages(
    question: str,
    passages: list[ScoredChunk],
    history: list[Message] | None = None,
    instruction: str = INSTRUCTION,
) -> list[Message]:
    """System turn: the instruction, then the numbered passages; then earlier turns; then the
    question alone as the user turn. Earlier answers lose their [n] markers: those numbered
    other passages."""
    system = f"{instruction}\n\nPassages:\n\n{format_passages(passages)}"
    earlier = [Message(m.role, strip_markers(m.content)) for m in history or []]
    return [Message("system", system), *earlier, Message("user", question.strip())]


def fit_prompt(
    question: str,
    passages: list[ScoredChunk],
    model: ChatModel,
    max_tokens: int,
    history: list[Message] | None = None,
    instruction: str = INSTRUCTION,
) -> GroundedPrompt:
    """The largest prompt that leaves `max_tokens` for the answer.

    Budget = model.context_size - max_tokens, measured with the model's own template and
    tokenizer. Over budget, the oldest history messages go first, then passages one at a time
    from the lowest-ranked end; at least one passage must stay. Raises ContextWindowError when
    even the question with the best passage does not fit.
    """
    budget = model.context_size - max_tokens
    if budget <= 0:
        raise ContextWindowError(
            f"max_tokens ({max_tokens}) leaves no room for a prompt in a context of "
            f"{model.context_size} tokens; lower max_tokens or raise context_size"
        )
    history = list(history or [])
    kept = list(passages)
    dropped_history = 0
    while True:
        messages = build_messages(question, kept, history, instruction)
        tokens = model.count_tokens(messages)
        if tokens <= budget:
            return GroundedPrompt(
                messages, kept, len(passages) - len(kept), dropped_history, tokens
            )
        if history:
            history.pop(0)
            dropped_history += 1
        elif len(kept) > 1:
            kept.pop()
        else:
            break
    alone = model.count_tokens(build_messages(question, [], [], instruction))
    if alone > budget:
        raise ContextWindowError(
            f"the question alone takes {alone} prompt tokens, more than the {budget} left by a "
            f"context of {model.context_size} minus max_tokens {max_tokens}; shorten the "
            "question, lower max_tokens or raise context_size"
        )
    raise ContextWindowError(
        f"the best passage does not fit: question and passage take {tokens} prompt tokens, more "
        f"than the {budget} left by a context of {model.context_size} minus max_tokens "
        f"{max_tokens}; lower max_tokens, raise context_size or index with smaller chunks"
    )

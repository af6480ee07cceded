"""What a generation produces, as plain items the routes format: text deltas, then one Finish
per choice. `chat_events` drives any ChatModel; hearth.serve.rag drives the Answerer.

Both run in a worker thread (hearth.serve.pump); everything here is blocking code.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from hearth.types import ChatModel, Message, StreamEnd, ToolCall, Usage

SEED_MODULUS = 2**32  # llama.cpp seeds are 32-bit; any int64 the client sends maps into range


@dataclass
class Delta:
    """New text for choice `index`."""

    index: int
    text: str


@dataclass
class Finish:
    """Choice `index` is complete, with the tool calls the model made. RAG answers also carry
    the verified text and its sources; agent answers their steps."""

    index: int
    reason: str
    usage: Usage = field(default_factory=Usage)
    answer: str | None = None
    citations: list[dict[str, Any]] | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    steps: list[dict[str, Any]] | None = None  # hearth-agent: its tool calls, in order
    agent: dict[str, Any] | None = None  # hearth-agent: why it stopped, turns, time


Item = Delta | Finish


def choice_seed(seed: int | None, index: int) -> int | None:
    """Choice i of a request with `seed` samples with seed + i: reproducible, yet distinct."""
    return None if seed is None else (seed + index) % SEED_MODULUS


def chat_events(
    model: ChatModel, messages: list[Message], params: dict[str, Any], n: int = 1
) -> Iterator[Item]:
    """`n` generations one after another (one model, one context), as Delta/Finish items.

    Closing this generator closes the model's stream, which stops llama.cpp mid-generation.
    """
    seed = params.get("seed")
    for index in range(n):
        events = model.stream_events(messages, **{**params, "seed": choice_seed(seed, index)})
        try:
            for event in events:
                if isinstance(event, StreamEnd):
                    reason = event.finish_reason or "stop"
                    yield Finish(index, reason, event.usage, tool_calls=list(event.tool_calls))
                elif event:
                    yield Delta(index, event)
        finally:
            events.close()


class UsageRecorder:
    """A ChatModel wrapper whose `stream` keeps this request's token usage and finish reason
    (the Answerer calls `stream`, which reports neither; a shared model must not hold them)."""

    def __init__(self, inner: ChatModel) -> None:
        self.inner = inner
        self.usage = Usage()
        self.last_finish_reason: str | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def reset(self) -> None:
        self.usage = Usage()
        self.last_finish_reason = None

    def chat(self, messages: list[Message], **params: Any) -> Any:
        """The inner model's chat, its usage added to this request's (agents call `chat`)."""
        result = self.inner.chat(messages, **params)
        self.usage.prompt_tokens += result.usage.prompt_tokens
        self.usage.completion_tokens += result.usage.completion_tokens
        self.usage.cached_tokens += result.usage.cached_tokens
        self.last_finish_reason = result.finish_reason
        return result

    def stream(self, messages: list[Message], **params: Any) -> Iterator[str]:
        events = self.inner.stream_events(messages, **params)
        ended, deltas = False, 0
        try:
            for event in events:
                if isinstance(event, StreamEnd):
                    ended = True
                    self.usage.prompt_tokens += event.usage.prompt_tokens
                    self.usage.completion_tokens += event.usage.completion_tokens
                    self.usage.cached_tokens += event.usage.cached_tokens
                    self.last_finish_reason = event.finish_reason
                else:
                    deltas += 1
                    yield event
        finally:
            events.close()
            if not ended:
                # The caller stopped early (the Answerer cuts a looping model), so no StreamEnd
                # came: count the prompt, and the deltas received (one token each, or close).
                self.usage.prompt_tokens += self.inner.count_tokens(messages)
                self.usage.completion_tokens += deltas

"""A scripted model for tests whose point is the agent loop itself (budgets, repeats, the
trace, the sandbox around tools): it replies with a fixed list of turns, recording each."""

from __future__ import annotations

import json

from hearth.types import ChatResult, ToolCall


class Scripted:
    context_size = 4096
    can_stream = False
    supports_json_schema = False

    def __init__(self, replies, supports_tools=True):
        self.name = "scripted"
        self.supports_tools = supports_tools
        self.replies = list(replies)
        self.seen = []

    def chat(self, messages, **params):
        self.seen.append((list(messages), params))
        reply = self.replies.pop(0) if self.replies else "no more turns"
        return reply if isinstance(reply, ChatResult) else ChatResult(reply, self.name)


def call(name, i=0, **arguments):
    """A turn that calls one tool natively."""
    tc = ToolCall(f"call{i}-{name}", name, json.dumps(arguments))
    return ChatResult("", "scripted", "tool_calls", tool_calls=[tc])

"""The capability check: a clear CapabilityError listing everything a model lacks."""

from __future__ import annotations

import pytest

from hearth import llm
from hearth.errors import CapabilityError
from hearth.llm.capabilities import Capabilities, capabilities, require


def test_capabilities_read_the_models_attributes():
    model = llm.load("ollama:llama3.2", context_size=8192)
    # tools forwarded natively; JSON schema output as response_format (hearth.generate validates)
    assert capabilities(model) == Capabilities(True, True, True, 8192)


def test_require_returns_the_model_when_it_has_what_is_asked():
    model = llm.load("local:smollm2", context_size=1024)
    assert require(model, stream=True, context=1024) is model


def test_require_lists_everything_missing_and_how_to_fix_it():
    model = llm.load("vllm:m", context_size=4096)
    with pytest.raises(CapabilityError) as err:
        require(model, tools=True, json_schema=True, context=16_000)
    message = str(err.value)
    assert message.startswith("vllm:m lacks ")
    assert "tool calling" not in message and "JSON schema output" not in message
    assert "a context of 16000 tokens (it has 4096" in message
    assert "HEARTH_CONTEXT_SIZE" in message


def test_a_model_that_cannot_stream_is_refused_for_streaming():
    class Batch:
        name = "batch-only"
        can_stream = False
        supports_tools = supports_json_schema = False
        context_size = 512

    with pytest.raises(CapabilityError, match="batch-only lacks streaming"):
        require(Batch(), stream=True)
    assert require(Batch()) is not None

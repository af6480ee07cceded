"""EngineChatModel (`engine:` specs) on the real SmolLM2: the ChatModel protocol, equal to the
single-sequence Generator at temperature 0, concurrent callers batched together, early close
freeing blocks, stop strings and usage."""

from __future__ import annotations

import threading
import time

import pytest

torch = pytest.importorskip("torch")

from hearth.engine.chat_model import EngineChatModel  # noqa: E402
from hearth.engine.generator import Generator  # noqa: E402
from hearth.engine.sampling import SamplingParams  # noqa: E402
from hearth.errors import ConfigError, ContextWindowError, ModelNotFoundError  # noqa: E402
from hearth.types import ChatModel, Message, StreamEnd  # noqa: E402

QUESTIONS = ["What is the capital of France?", "Name three colors.", "What is 2+2?", "Say hi."]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: on 2 shared cores, two OpenMP threads spin-wait for each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def chat_engine(engine_model, engine_tokenizer, gguf_path):
    m = EngineChatModel(
        gguf_path,
        1024,
        name="engine:smollm2",
        model=engine_model,
        tokenizer=engine_tokenizer,
        block_size=8,
        kv_cache_mb=64,
    )
    yield m.warm_up()
    m.close()


def user(text: str) -> list[Message]:
    return [Message("user", text)]


def generator_text(engine_model, engine_tokenizer, question: str, max_tokens: int) -> str:
    gen = Generator(precision="fp32")  # the session fixture's fp32 model
    gen.model, gen.tokenizer = engine_model, engine_tokenizer
    ids = engine_tokenizer.encode_chat(user(question))
    return gen.run(ids, SamplingParams(max_tokens=max_tokens)).text


def wait_idle(m: EngineChatModel, timeout: float = 30.0) -> None:
    bm = m.engine.block_manager
    deadline = time.monotonic() + timeout
    while m.engine.has_unfinished() or bm.num_free_blocks != bm.num_blocks:
        assert time.monotonic() < deadline, "the engine never went idle"
        time.sleep(0.02)


def test_spec_registry_and_capabilities(gguf_path, tmp_path):
    import hearth.llm

    m = hearth.llm.load("engine:smollm2", context_size=512)
    assert isinstance(m, EngineChatModel) and isinstance(m, ChatModel)
    assert m.name == "engine:smollm2" and m.context_size == 512
    assert m.can_stream and not m.supports_tools
    assert m.supports_json_schema and m.masks_tokens  # token masks (test_constrained_engine.py)
    assert m._engine is None  # cheap to build: nothing loaded yet
    by_path = EngineChatModel.from_spec(str(gguf_path), 256)
    assert by_path.name == f"engine:{gguf_path.name}"
    with pytest.raises(ModelNotFoundError, match="engine:smollm2"):
        EngineChatModel.from_spec(str(tmp_path / "missing.gguf"))
    with pytest.raises(ConfigError, match="precision"):
        EngineChatModel.from_spec("smollm2", precision="fp8")
    with pytest.raises(ConfigError, match="block_size"):
        EngineChatModel.from_spec("smollm2", block_size=0)


def test_chat_and_stream_equal_the_generator(chat_engine, engine_model, engine_tokenizer):
    q = QUESTIONS[0]
    result = chat_engine.chat(user(q), max_tokens=16, temperature=0)
    streamed = "".join(chat_engine.stream(user(q), max_tokens=16))
    assert result.text == streamed
    assert result.text == generator_text(engine_model, engine_tokenizer, q, 16)
    assert result.model == "engine:smollm2"


def test_concurrent_requests_are_batched_and_match_solo(chat_engine):
    solo = {q: chat_engine.chat(user(q), max_tokens=12).text for q in QUESTIONS}
    chat_engine.engine.runner.max_batch = 0
    results: dict[str, str] = {}
    start = threading.Barrier(len(QUESTIONS))

    def ask(q: str) -> None:
        start.wait()
        results[q] = chat_engine.chat(user(q), max_tokens=12).text

    threads = [threading.Thread(target=ask, args=(q,)) for q in QUESTIONS]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert results == solo
    assert chat_engine.engine.runner.max_batch >= 2  # they shared forwards
    wait_idle(chat_engine)


def test_closing_a_stream_early_aborts_and_frees_blocks(chat_engine):
    runner = chat_engine.engine.runner
    before = runner.forwards
    events = chat_engine.stream_events(user("Tell me a long story about a dragon."), max_tokens=200)
    first = next(events)
    assert isinstance(first, str)
    assert chat_engine.engine.block_manager.num_used_blocks > 0
    events.close()
    wait_idle(chat_engine)
    assert runner.forwards - before < 100  # it stopped long before max_tokens


def test_stop_strings_cut_the_text(chat_engine):
    full = chat_engine.chat(user(QUESTIONS[1]), max_tokens=20).text
    word = full.split()[2]
    cut = chat_engine.chat(user(QUESTIONS[1]), max_tokens=20, stop=[word, "zzzz"])
    assert cut.finish_reason == "stop"
    assert cut.text == full[: full.index(word)]
    wait_idle(chat_engine)


def test_stream_events_end_with_usage(chat_engine):
    messages = user(QUESTIONS[3])
    events = list(chat_engine.stream_events(messages, max_tokens=5))
    assert isinstance(events[-1], StreamEnd)
    assert all(isinstance(e, str) for e in events[:-1])
    end = events[-1]
    assert end.usage.prompt_tokens == chat_engine.count_tokens(messages)
    assert end.finish_reason == "length" and end.usage.completion_tokens == 5
    eos = chat_engine.chat(user(QUESTIONS[2]), max_tokens=200)
    assert eos.finish_reason == "stop" and 0 < eos.usage.completion_tokens < 200


def test_bad_parameters_and_long_prompts_fail_clearly(chat_engine):
    with pytest.raises(TypeError, match="unknown generation parameter"):
        chat_engine.chat(user("hi"), max_tokenz=3)
    with pytest.raises(ValueError, match="temperature"):
        chat_engine.chat(user("hi"), temperature=5)
    with pytest.raises(ContextWindowError, match="context"):
        chat_engine.chat(user("word " * 1200), max_tokens=3)

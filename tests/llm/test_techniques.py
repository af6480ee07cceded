"""Prompt techniques (hearth.llm.techniques): templates as data rendered into chat turns and
through the model's own chat template; few-shot examples chosen by the real embedder (checked
against a direct cosine computation); chain of thought and self-consistency on the real
SmolLM2 under constraints; the ReAct loop on SmolLM2 (JSON actions), on Qwen2.5-Coder (native
tool calls) and, where a fixed sequence of replies is the point, on a scripted model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import BaseModel

from hearth import llm
from hearth.errors import ConfigError, ModelNotFoundError
from hearth.llm.techniques import (
    CALCULATOR,
    Example,
    ExampleBank,
    PromptTemplate,
    Sample,
    Tool,
    action_schema,
    builtin_names,
    calculator,
    chain_of_thought,
    few_shot,
    majority_vote,
    normalise,
    react,
    select_examples,
    self_consistency,
    zero_shot,
)
from hearth.structured import compile, validation_error
from hearth.types import ChatResult, Message, ToolCall

EXAMPLES = [
    Example("What is the capital of Italy?", "Rome"),
    Example("Translate 'cat' into French.", "chat"),
    Example("What is 7 plus 5?", "12"),
    Example("What is the capital of Japan?", "Tokyo"),
    Example("Is this review positive or negative: 'I loved it'?", "positive"),
    Example("Translate 'dog' into Spanish.", "perro"),
    Example("What is 9 times 3?", "27"),
    Example("Which city is the capital of Canada?", "Ottawa"),
]
QUESTION = "What is the capital of Germany?"


# ---- templates as data -------------------------------------------------------------------


def test_the_builtin_templates_ship_with_the_package():
    assert {"zero_shot", "few_shot", "chain_of_thought", "final_answer", "react"} <= set(
        builtin_names()
    )


def test_a_template_renders_turns_in_order():
    turns = PromptTemplate.load("few_shot").render(
        question="Q?", examples=EXAMPLES[:2], system="Be brief."
    )
    assert [(m.role, m.content) for m in turns] == [
        ("system", "Be brief."),
        ("user", EXAMPLES[0].input),
        ("assistant", EXAMPLES[0].output),
        ("user", EXAMPLES[1].input),
        ("assistant", EXAMPLES[1].output),
        ("user", "Q?"),
    ]


def test_a_users_template_file_is_loaded(tmp_path):
    path = tmp_path / "mine.jinja"
    path.write_text('{% call message("user") %}Answer in French: {{ question }}{% endcall %}\n')
    (turn,) = PromptTemplate.load(path).render(question="Hi?")
    assert (turn.role, turn.content) == ("user", "Answer in French: Hi?")
    with pytest.raises(ConfigError, match="not a built-in template"):
        PromptTemplate.load(tmp_path / "missing.jinja")


def test_bind_fills_variables_ahead_and_a_render_wins():
    template = PromptTemplate.from_string(
        '{% call message("user") %}{{ greeting }}, {{ question }}{% endcall %}'
    ).bind(greeting="Hello", question="unused")
    (turn,) = template.render(question="who?")
    assert turn.content == "Hello, who?"
    with pytest.raises(ConfigError, match="reserved"):
        template.render(message="x")


@pytest.mark.parametrize(
    "source, problem",
    [
        ('{% call message("user") %}{{ question }}{% endcall %}', "'question' is undefined"),
        ('Hello {% call message("user") %}x{% endcall %}', "text outside a message block"),
        ('{% call message("robot") %}x{% endcall %}', "role 'robot'"),
        ("{# nothing #}", "made no messages"),
        ('{% call message("user") %}{{ x.__class__.__mro__ }}{% endcall %}', "mine"),
        ('{% call message("user") %}{{ x %}', "line 1"),
    ],
)
def test_a_bad_template_is_a_clear_error_naming_it(source, problem):
    with pytest.raises(ConfigError, match="mine") as err:
        PromptTemplate.from_string(source, "mine").render(x="s")
    assert problem in str(err.value)


# ---- few-shot selection with the real embedder ---------------------------------------------


def test_few_shot_picks_the_nearest_examples_by_cosine(embedder):
    chosen = select_examples(QUESTION, EXAMPLES, embedder, k=3)
    # the reference: embed each text alone and compare by cosine in numpy
    q = embedder.embed([QUESTION])[0]
    vectors = np.stack([embedder.embed([e.input])[0] for e in EXAMPLES])
    cosine = vectors @ q / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(q))
    expected = list(np.argsort(-cosine, kind="stable")[:3])[::-1]  # most similar last
    assert [c.index for c in chosen] == expected
    np.testing.assert_allclose([c.score for c in chosen], cosine[expected], atol=1e-5)
    assert {c.example.output for c in chosen} == {"Rome", "Tokyo", "Ottawa"}
    assert chosen[0].score <= chosen[1].score <= chosen[2].score


def test_tied_examples_go_to_the_one_given_first(embedder):
    bank = ExampleBank([EXAMPLES[2], EXAMPLES[0], ("What is the capital of Italy?", "Roma")],
                       embedder)  # fmt: skip
    (only,) = bank.select(QUESTION, 1)
    assert only.index == 1 and only.example.output == "Rome"
    both = bank.select(QUESTION, 2)
    assert [c.index for c in both] == [2, 1]  # the earlier of the tie sits next to the question


def test_few_shot_shows_the_chosen_examples_through_the_chat_template(chat_model, embedder):
    answer = few_shot(chat_model, QUESTION, EXAMPLES, embedder, k=3, max_tokens=4)
    assert [c.example for c in answer.examples] == [
        EXAMPLES[c.index] for c in select_examples(QUESTION, EXAMPLES, embedder, 3)
    ]
    prompt = chat_model.render(answer.messages)
    at = 0
    for c in answer.examples:
        turn = (
            f"<|im_start|>user\n{c.example.input}<|im_end|>\n"
            f"<|im_start|>assistant\n{c.example.output}<|im_end|>\n"
        )
        found = prompt.find(turn, at)
        assert found >= at, f"example {c.index} missing or out of order in the prompt"
        at = found + len(turn)
    assert prompt[at:] == f"<|im_start|>user\n{QUESTION}<|im_end|>\n<|im_start|>assistant\n"
    assert answer.text and answer.value == answer.text


def test_few_shot_without_an_embedder_takes_the_first_k(chat_model):
    answer = few_shot(chat_model, QUESTION, EXAMPLES, k=2, schema=["Berlin", "Paris"])
    assert [c.example for c in answer.examples] == EXAMPLES[:2]
    assert answer.value in ("Berlin", "Paris")


# ---- zero-shot and chain of thought on SmolLM2 ---------------------------------------------


def test_zero_shot_goes_through_the_models_template_with_its_system_turn(chat_model):
    answer = zero_shot(chat_model, "Name a colour.", system="Answer in one word.", max_tokens=4)
    assert chat_model.render(answer.messages).startswith(
        "<|im_start|>system\nAnswer in one word.<|im_end|>\n<|im_start|>user\nName a colour."
    )
    assert answer.text


class Apples(BaseModel):
    apples: int


def test_chain_of_thought_reasons_then_answers_within_the_schema(chat_model):
    schema = {
        "type": "object",
        "properties": {"apples": {"type": "integer", "minimum": 0}},
        "required": ["apples"],
        "additionalProperties": False,
    }
    question = "Tom has 3 apples and buys 2 more. How many apples does he have?"
    answer = chain_of_thought(chat_model, question, schema, max_tokens=48)
    assert validation_error(schema, answer.value) is None
    assert answer.reasoning and answer.text == json.dumps(answer.value)
    # the answer was asked for after the reasoning, in the same conversation
    reasoning_turn, ask = answer.messages[-2:]
    assert (reasoning_turn.role, reasoning_turn.content) == ("assistant", answer.reasoning)
    assert ask.role == "user" and question in ask.content
    typed = chain_of_thought(chat_model, question, Apples, max_tokens=32)
    assert isinstance(typed.value, Apples)


# ---- self-consistency ----------------------------------------------------------------------


def test_majority_vote_counts_normalised_answers_and_breaks_ties_by_order():
    samples = [
        Sample(0, "Paris.", normalise("Paris.")),
        Sample(1, " berlin", normalise(" berlin")),
        Sample(2, None, None, error="no answer"),
        Sample(3, "PARIS", normalise("PARIS")),
        Sample(4, "Berlin", normalise("Berlin")),
    ]
    vote = majority_vote(samples)
    assert vote.answer == "Paris." and vote.votes == {"paris": 2, "berlin": 2}
    assert vote.failed == 1 and sum(vote.votes.values()) + vote.failed == vote.n == 5
    assert vote.agreement == pytest.approx(0.4)
    assert normalise({"b": 4.0, "a": "X "}) == normalise({"a": "x", "b": 4})


def test_self_consistency_votes_over_n_samples_with_distinct_seeds(chat_model):
    choices = ["red", "blue", "green", "yellow"]
    vote = self_consistency(
        chat_model, "Pick one colour.", n=6, schema=choices, temperature=1.5, seed=0, max_tokens=4
    )
    assert [s.seed for s in vote.samples] == [0, 1, 2, 3, 4, 5]
    assert vote.failed == 0 and sum(vote.votes.values()) == 6
    recount: dict[str, int] = {}
    for s in vote.samples:
        assert s.value in choices  # the constraint held every sample to a choice
        recount[s.value] = recount.get(s.value, 0) + 1
    assert vote.votes == recount  # as dicts: the same counts
    counts = list(vote.votes.values())
    assert counts == sorted(counts, reverse=True)  # most votes first
    assert vote.answer in choices and recount[vote.answer] == max(recount.values())
    assert vote.agreement == recount[vote.answer] / 6
    # distinct seeds really sample: one seed for all would give one answer six times
    assert len(recount) > 1


def test_self_consistency_counts_answers_an_extractor_cannot_find_as_failed(chat_model):
    vote = self_consistency(chat_model, "Say hi.", n=2, extractor=lambda text: None, max_tokens=4)
    assert vote.answer is None and vote.failed == 2 and vote.agreement == 0.0
    with pytest.raises(ValueError, match="temperature > 0"):
        self_consistency(chat_model, "Say hi.", n=2, temperature=0)


# ---- ReAct ---------------------------------------------------------------------------------


def test_the_calculator_walks_the_ast_and_never_evals():
    assert calculator("(2 + 3) * 4 - 10 / 4") == 17.5 and calculator("1234 * 5678") == 7006652
    too_big = "((10 ** 64) ** 64) ** 64"  # a model must not make it build a huge integer
    for bad in ["__import__('os').system('true')", "2 ** 1000", "x + 1", "1 if 1 else 2", too_big]:
        with pytest.raises(ValueError):
            calculator(bad)


class Scripted:
    """A model that replies with a fixed list of turns (strings, or ChatResults with tool
    calls), recording what it was shown: where a test needs a known sequence of actions."""

    context_size = 2048
    can_stream = False
    supports_json_schema = False

    def __init__(self, replies, supports_tools=False):
        self.name = "scripted"
        self.supports_tools = supports_tools
        self.replies = list(replies)
        self.seen: list[list[Message]] = []

    def chat(self, messages, **params):
        self.seen.append(list(messages))
        reply = self.replies.pop(0)
        return reply if isinstance(reply, ChatResult) else ChatResult(reply, self.name)


def _action(**kw):
    return json.dumps(kw)


def test_react_reaches_a_final_answer_and_records_every_step():
    model = Scripted([
        _action(thought="multiply", tool="calculator", input={"expression": "17 * 23"}),
        _action(thought="add one", tool="calculator", input={"expression": "391 + 1"}),
        _action(thought="done", final_answer="392"),
    ])  # fmt: skip
    result = react(model, "What is 17 * 23 + 1?", [CALCULATOR], max_steps=4)
    assert result.stopped == "answer" and result.answer == "392"
    assert result.transcript() == [
        {"thought": "multiply", "tool": "calculator", "input": {"expression": "17 * 23"},
         "output": "391", "ok": True},
        {"thought": "add one", "tool": "calculator", "input": {"expression": "391 + 1"},
         "output": "392", "ok": True},
        {"thought": "done", "tool": None, "input": None, "output": "392", "ok": True},
    ]  # fmt: skip
    # each turn saw the earlier actions and their observations
    last = model.seen[-1]
    assert [m.content for m in last[-4:]] == [
        _action(thought="multiply", tool="calculator", input={"expression": "17 * 23"}),
        "Observation: 391",
        _action(thought="add one", tool="calculator", input={"expression": "391 + 1"}),
        "Observation: 392",
    ]


def test_the_step_budget_stops_a_loop_that_never_answers():
    calls = [_action(thought="again", tool="calculator", input={"expression": f"{i} + 1"})
             for i in range(10)]  # fmt: skip
    model = Scripted(calls)
    result = react(model, "Count forever.", [CALCULATOR], max_steps=3)
    assert result.stopped == "max_steps" and result.answer is None
    assert len(result.steps) == 3 == len(model.seen)
    assert [s.output for s in result.steps] == ["1", "2", "3"]


def test_unknown_tools_bad_inputs_failures_and_repeats_become_observations():
    def boom(expression: str) -> str:
        raise RuntimeError("the tool broke")

    tools = {"calculator": CALCULATOR, "flaky": (boom, CALCULATOR.parameters)}
    calls = [
        ToolCall("c1", "search_web", '{"query": "x"}'),
        ToolCall("c2", "calculator", '{"expr": "1 + 1"}'),
        ToolCall("c3", "flaky", '{"expression": "1"}'),
        ToolCall("c4", "calculator", '{"expression": "2 + 2"}'),
        ToolCall("c5", "calculator", '{"expression": "2 + 2"}'),
    ]
    model = Scripted(
        [ChatResult("", "scripted", "tool_calls", tool_calls=[c]) for c in calls]
        + [ChatResult("It is 4.", "scripted")],
        supports_tools=True,
    )
    result = react(model, "What is 2 + 2?", tools, max_steps=6)
    outputs = [s.output for s in result.steps]
    assert outputs[0].startswith("error: unknown tool 'search_web'; use one of: calculator, flaky")
    assert "does not fit calculator's schema" in outputs[1]
    assert outputs[2] == "error: flaky failed: RuntimeError: the tool broke"
    assert outputs[3] == "4" and "already called with this input" in outputs[4]
    assert [s.ok for s in result.steps] == [False, False, False, True, False, True]
    assert result.answer == "It is 4." and result.stopped == "answer"
    # the observations went back as tool turns answering each call
    tool_turns = [m for m in model.seen[-1] if m.role == "tool"]
    assert [(m.tool_call_id, m.content) for m in tool_turns] == list(
        zip([c.id for c in calls], outputs[:5], strict=True)
    )


def test_tools_are_typed_by_json_schema():
    with pytest.raises(ValueError, match="type"):
        Tool("t", len, {"type": "string"})
    with pytest.raises(ValueError, match="letters"):
        Tool("bad name", len, {"type": "object"})
    schema = action_schema({"calculator": CALCULATOR})
    accepts = compile(schema).accepts
    assert accepts(_action(thought="t", tool="calculator", input={"expression": "1"}))
    assert accepts(_action(thought="t", final_answer="1"))
    assert not accepts(_action(thought="t", tool="shell", input={"expression": "1"}))
    assert not accepts(_action(thought="t", tool="calculator", input={"cmd": "ls"}))
    assert CALCULATOR.definition()["function"]["parameters"] == CALCULATOR.parameters


def test_tools_from_pydantic_models_keep_their_references():
    """A nested pydantic model is a $ref into the tool's own $defs: inside the action schema
    it must still point at that tool's definitions."""

    class Place(BaseModel):
        city: str

    class Trip(BaseModel):
        start: Place
        end: Place

    trip = Tool("route", lambda **kw: "2 h", Trip.model_json_schema())
    accepts = compile(action_schema({"route": trip, "calculator": CALCULATOR})).accepts
    places = {"start": {"city": "Oslo"}, "end": {"city": "Bergen"}}
    assert accepts(_action(thought="t", tool="route", input=places))
    assert not accepts(_action(thought="t", tool="route", input={**places, "end": {"town": "x"}}))
    assert accepts(_action(thought="t", tool="calculator", input={"expression": "1"}))


def test_react_with_json_actions_on_smollm2_stays_within_its_tools_and_budget(chat_model):
    result = react(chat_model, "What is 17 * 23?", [CALCULATOR], max_steps=2, max_tokens=96)
    assert 1 <= len(result.steps) <= 2
    assert (result.stopped == "answer") == (result.steps[-1].tool is None)
    for step in result.steps:
        assert step.tool in ("calculator", None)
        if step.tool:  # the constraint held the input to the tool's schema
            assert validation_error(CALCULATOR.parameters, step.input) is None
    prompt = chat_model.render(result.messages)
    assert prompt.startswith("<|im_start|>system\nYou answer questions step by step")
    if result.stopped == "max_steps":
        assert prompt.count("Observation: ") == 2


@pytest.fixture(scope="module")
def qwen():
    try:
        return llm.load("local:qwen2.5-coder-0.5b", context_size=2048)
    except ModelNotFoundError as exc:
        pytest.skip(f"Qwen2.5-Coder-0.5B is not installed here: {exc}")


def test_react_uses_native_tool_calls_on_a_model_that_has_them(qwen):
    # tool_choice="required" goes to every turn: the first one must call the calculator
    result = react(qwen, "What is 1234 * 5678?", [CALCULATOR], max_steps=1,
                   tool_choice="required", max_tokens=48)  # fmt: skip
    (step,) = result.steps
    assert step.tool == "calculator" and result.stopped == "max_steps"
    assert step.output == str(calculator(step.input["expression"]))
    assert result.messages[-1].role == "tool" and result.messages[-2].tool_calls
    prompt = qwen.render(result.messages, tools=[CALCULATOR.definition()])
    assert f"<tool_response>\n{step.output}\n</tool_response>" in prompt

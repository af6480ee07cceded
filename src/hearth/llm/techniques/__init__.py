"""Prompt techniques as data: zero-shot, few-shot (examples chosen by embedding similarity),
chain of thought (free reasoning, then an answer held to a schema), self-consistency (sample,
vote) and a ReAct loop (thought, tool call, observation) over any ChatModel.

Prompts are Jinja templates in templates/*.jinja that render chat turns; the model's own chat
template then makes the prompt, so no technique writes a special token. Pass `template=` (a
built-in name, a .jinja file or a PromptTemplate) to use your own. Hand-written: example
selection, the vote and the ReAct loop (the product); jinja2 renders, hearth.generate constrains.
"""

from hearth.llm.techniques.basic import (
    Answer,
    Chosen,
    Example,
    ExampleBank,
    chain_of_thought,
    few_shot,
    select_examples,
    zero_shot,
)
from hearth.llm.techniques.prompt import PromptTemplate, builtin_names
from hearth.llm.techniques.react import (
    CALCULATOR,
    ReactResult,
    Step,
    Tool,
    action_schema,
    as_tools,
    calculator,
    react,
)
from hearth.llm.techniques.voting import Sample, Vote, majority_vote, normalise, self_consistency

__all__ = [
    "CALCULATOR",
    "Answer",
    "Chosen",
    "Example",
    "ExampleBank",
    "PromptTemplate",
    "ReactResult",
    "Sample",
    "Step",
    "Tool",
    "Vote",
    "action_schema",
    "as_tools",
    "builtin_names",
    "calculator",
    "chain_of_thought",
    "few_shot",
    "majority_vote",
    "normalise",
    "react",
    "select_examples",
    "self_consistency",
    "zero_shot",
]

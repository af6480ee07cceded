"""The built-in tools, registered through the same registry as a user's: `search` (the index,
with numbered citations), `calculator` (arithmetic from the syntax tree, never eval) and `sql`
(a question answered by one read-only SELECT on the given database).

Hand-written shells: the work is hearth.rag (search), hearth.llm.techniques.react's calculator
and hearth.query.sql (given to the run as AgentContext.sql by the CLI or the HTTP layer).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from hearth.agents.context import PASSAGE_CHARS, ToolEnv
from hearth.agents.registry import tool
from hearth.llm.techniques.react import CALCULATOR
from hearth.llm.techniques.react import calculator as _calculate

SQL_ROWS = 20  # rows of a result the model is shown


@tool(
    name="search",
    description="Search the indexed documents. Returns numbered passages [n] with their source "
    "file; cite the ones you use as [n].",
    needs=("search",),
    origin="builtin",
)
def search(
    query: Annotated[str, Field(description="what to look for, in a few words")],
    env: ToolEnv,
) -> str:
    hits = list(env.context.search(query, env.context.search_k))
    if not hits:
        return "no passages found"
    lines = []
    for hit in hits:
        c = env.cite(hit)
        text = " ".join(c.text.split())
        if len(text) > PASSAGE_CHARS:
            text = text[:PASSAGE_CHARS] + " ..."
        lines.append(f"[{c.n}] {Path(c.source).name}: {text}")
    return "\n".join(lines)


_TIMES = re.compile(r"(?<=[\d)\s])[x×✕·](?=[\s\d(])")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")


def normalise_expression(expression: str) -> str:
    """What small models write around arithmetic, made plain: `17 × 23 =`, `2^10`, `1,234`."""
    text = expression.strip().rstrip("=").strip()
    text = _THOUSANDS.sub("", text).replace("^", "**").replace("÷", "/").replace("−", "-")
    return _TIMES.sub("*", text)


def calculator(expression: str) -> int | float:
    value = _calculate(normalise_expression(expression))
    return round(value, 10) if isinstance(value, float) else value


CALCULATOR_SCHEMA = {
    "type": "object",
    "properties": {
        "expression": {"type": "string", "description": "numbers with + - * / ** and ( )"}
    },
    "required": ["expression"],
    "additionalProperties": False,
}
tool(calculator, name="calculator", description=CALCULATOR.description,
     schema=CALCULATOR_SCHEMA, origin="builtin")  # fmt: skip


@tool(
    name="sql",
    description="Answer a question about the database (in plain words, or one SELECT): it is "
    "run as one read-only SELECT; returns the SQL, the columns and the rows.",
    needs=("sql",),
    origin="builtin",
    uses_model=True,
    timeout_s=60.0,
)
def sql(
    question: Annotated[str, Field(description="the question about the data")],
    env: ToolEnv,
) -> str:
    result = env.context.sql(question)
    rows = [list(r) for r in result.rows]
    out: dict[str, Any] = {"sql": result.sql, "columns": list(result.columns),
                           "rows": rows[:SQL_ROWS]}  # fmt: skip
    if len(rows) > SQL_ROWS:
        out["more_rows"] = len(rows) - SQL_ROWS
    return json.dumps(out, ensure_ascii=False, default=str)

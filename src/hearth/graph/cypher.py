"""Text-to-Cypher over the knowledge graph, validated before it runs.

The instruction model writes one read-only query under a regular expression (hearth.structured
masks its tokens) built from the graph's own labels and properties, so it cannot name others;
`validate` then checks any query, the model's or a person's: one statement, no writing clause
or procedure call, known labels and properties, Ladybug's own binder (EXPLAIN) happy, a LIMIT
no larger than MAX_LIMIT. It runs on a read-only database connection as a last guard.
Hand-written: the checks and the pattern; parsing and binding are LadybugDB's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from hearth.errors import HearthError
from hearth.types import ChatModel, Message

MAX_LIMIT = 100
WRITE_WORDS = (
    "CREATE", "MERGE", "SET", "DELETE", "DETACH", "REMOVE", "DROP", "ALTER", "LOAD", "COPY",
    "CALL", "INSTALL", "ATTACH", "DETACH", "USE", "EXPORT", "IMPORT", "CHECKPOINT", "BEGIN",
    "COMMIT", "ROLLBACK", "TRUNCATE", "FOREACH",
)  # fmt: skip
READ_STARTS = ("MATCH", "OPTIONAL", "WITH", "UNWIND", "RETURN")
_STRING = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
_COMMENT = re.compile(r"//[^\n]*|/\*.*?\*/", re.DOTALL)
_LABEL = re.compile(r"[(\[]\s*`?\w*`?\s*:\s*`?(\w+)`?((?:\s*\|\s*:?\s*`?\w+`?)*)")
_PROPERTY = re.compile(r"\b([A-Za-z_]\w*)\s*\.\s*`?([A-Za-z_]\w*)`?")
_MAP_KEY = re.compile(r"\{\s*`?(\w+)`?\s*:|,\s*`?(\w+)`?\s*:(?!:)")
_LIMIT = re.compile(r"\bLIMIT\s+(\d+)\s*$", re.IGNORECASE)


class CypherRefused(HearthError):
    """A query that must not run: what is wrong is in the message."""


@dataclass
class CypherResult:
    cypher: str
    columns: list[str]
    rows: list[list[Any]]

    def to_json(self) -> dict[str, Any]:
        return {"cypher": self.cypher, "columns": self.columns, "rows": self.rows}


def _bare(query: str) -> str:
    """The query with comments gone and string literals emptied (keywords inside quotes are
    data, not clauses)."""
    return _STRING.sub("''", _COMMENT.sub(" ", query))


def validate(query: str, schema: dict[str, dict[str, str]], *, max_limit: int = MAX_LIMIT) -> str:
    """The query to run (LIMIT added or lowered to `max_limit`), or CypherRefused."""
    text = query.strip()
    while text.endswith(";"):
        text = text[:-1].rstrip()
    bare = _bare(text)
    if not bare.strip():
        raise CypherRefused("empty query")
    if ";" in bare:
        raise CypherRefused("one statement only: the query has more than one (a ';' inside)")
    upper = bare.upper()
    for word in WRITE_WORDS:
        if re.search(rf"\b{word}\b", upper):
            raise CypherRefused(f"read-only queries only: {word} is not allowed")
    if not upper.lstrip().startswith(READ_STARTS):
        raise CypherRefused("a query starts with MATCH, OPTIONAL MATCH, WITH, UNWIND or RETURN")
    labels = set(schema)
    props = {p for table in schema.values() for p in table}
    for m in _LABEL.finditer(bare):
        names = [m.group(1), *re.findall(r"\w+", m.group(2) or "")]
        for name in names:
            if name not in labels:
                raise CypherRefused(
                    f"unknown label {name!r}: the graph has {', '.join(sorted(labels))}"
                )
    functions = set(re.findall(r"\b(\w+)\s*\(", bare))
    for var, prop in _PROPERTY.findall(bare):
        if var in functions or var.isdigit():
            continue
        if prop not in props:
            raise CypherRefused(
                f"unknown property {prop!r}: properties are {', '.join(sorted(props))}"
            )
    for m in _MAP_KEY.finditer(bare):
        key = m.group(1) or m.group(2)
        if key and key not in props and _inside_pattern(bare, m.start()):
            raise CypherRefused(f"unknown property {key!r} in a pattern")
    found = _LIMIT.search(text)
    if found is None:
        text = f"{text} LIMIT {max_limit}"
    elif int(found.group(1)) > max_limit:
        text = text[: found.start()] + f"LIMIT {max_limit}"
    return text


def _inside_pattern(bare: str, at: int) -> bool:
    """Whether the map at `at` sits in a node or relationship pattern (not a RETURN map)."""
    before = bare[:at]
    return before.rfind("(") > before.rfind(")") or before.rfind("[") > before.rfind("]")


def run_validated(graph: Any, query: str, *, max_limit: int = MAX_LIMIT) -> CypherResult:
    """Validate, bind-check (EXPLAIN) and run a query on the graph (open it read-only)."""
    cypher = validate(query, graph.schema(), max_limit=max_limit)
    try:
        graph.query(f"EXPLAIN {cypher}")
    except RuntimeError as exc:
        raise CypherRefused(f"invalid query: {exc}") from None
    columns, rows = graph.query(cypher)
    return CypherResult(cypher, list(columns), [list(r) for r in rows])


def query_pattern(schema: dict[str, dict[str, str]]) -> str:
    """The regular expression the model's query must match, naming only this graph's labels
    and properties: one or two hops from an Entity, filtered by name, returning properties."""
    node = next(n for n, p in schema.items() if "name" in p)
    rel = next((n for n in schema if n != node), "REL")
    rel_props = [p for p in schema.get(rel, {}) if p in ("relation", "source", "evidence")]
    value = r"'[A-Za-z0-9 .,\-]{1,40}'"
    cond = rf"lower\([abc]\.name\) CONTAINS {value}"
    rcond = rf"lower\(r\.relation\) CONTAINS {value}"
    returned = "|".join([r"[abc]\.name"] + [rf"r\.{p}" for p in rel_props] + [r"count\(\*\)"])
    return (
        rf"MATCH \(a:{node}\)-\[r:{rel}\]-\(b:{node}\)"
        rf"(-\[r2:{rel}\]-\(c:{node}\))? "
        rf"WHERE {cond}( (AND|OR) ({cond}|{rcond}))? "
        rf"RETURN (DISTINCT )?({returned})(, ({returned})){{0,3}} LIMIT [1-9][0-9]?"
    )


PROMPT = """You write Cypher for a knowledge graph database.
Nodes: (:{node} {{name}}). Relationships: [:{rel} {{relation, source, evidence}}] where
relation is a short verb phrase. Some entity names in the graph: {names}.
Use lower(x.name) CONTAINS 'lowercase words' to find entities.
Example question: Who designed the Harbour Library?
Example query: MATCH (a:{node})-[r:{rel}]-(b:{node}) WHERE lower(a.name) CONTAINS 'harbour library' AND lower(r.relation) CONTAINS 'design' RETURN b.name, r.relation, r.source LIMIT 10"""  # noqa: E501


def text_to_cypher(model: ChatModel, question: str, graph: Any, *, max_tokens: int = 160) -> str:
    """The model's Cypher for `question`, under `query_pattern(graph.schema())`."""
    from hearth.llm.structured_output import generate

    schema = graph.schema()
    node = next(n for n, p in schema.items() if "name" in p)
    rel = next((n for n in schema if n != node), "REL")
    names = ", ".join(e["name"] for e in graph.entities()[:40]) or "(none)"
    messages = [
        Message("system", PROMPT.format(node=node, rel=rel, names=names)),
        Message("user", f"Question: {question}\nQuery:"),
    ]
    return generate(model, messages, query_pattern(schema), max_tokens=max_tokens).strip()

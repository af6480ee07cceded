"""Text-to-SQL: a question about a SQLite file or a PostgreSQL database answered by one read-only
SELECT, written by a model under a SQL grammar that names only the schema's tables and
columns, checked with sqlglot, run read-only with a timeout and a row cap, and repaired from
the database's own error a bounded number of times. Requests to change data are refused.

    from hearth.query.sql import text_to_sql
    result = text_to_sql("How many invoices are overdue?", "shop.sqlite", model)
    result.to_json()  # {"sql": ..., "columns": [...], "rows": [[...]], ...}

Hand-written: the prompt, the loop and the refusals (sql_check), the grammar (sql_grammar),
schema reading (sql_schema) and the read-only runners (sql_exec); parsing is sqlglot's,
masking hearth.structured's (llguidance), execution sqlite3's and psycopg's.
"""

from __future__ import annotations

import time

from hearth.errors import HearthError
from hearth.query.sql_check import (
    SqlRefused,
    check_read_only,
    looks_like_sql,
    refuse_write_request,
    write_intent,
)
from hearth.query.sql_exec import (
    Database,
    SqlExecutionError,
    SqlResult,
    connect,
    describe_db,
)
from hearth.query.sql_schema import Schema, read_schema
from hearth.types import ChatModel, Message

__all__ = [
    "SqlExecutionError",
    "SqlRefused",
    "SqlResult",
    "check_read_only",
    "generate_sql",
    "run_read_only",
    "text_to_sql",
    "write_intent",
]

MAX_SQL_TOKENS = 256
RESAMPLE_TEMPERATURE = 0.7
SCHEMA_CHARS = 3000
DIALECT_NAMES = {"sqlite": "SQLite", "postgres": "PostgreSQL"}

SYSTEM = (
    "You write {name} queries. Answer the user's question with exactly one {name} SELECT "
    "statement over the tables below, and nothing else. Select only the columns the question "
    "asks for. Use only tables and columns that exist below; join through the REFERENCES "
    "keys, with one- or two-letter table aliases. Write SQL keywords in upper case. Text "
    "values must match the sample values' spelling.\n\n{schema}"
)
REPAIR = (
    "Running that query failed: {error}\nWrite a corrected {name} query that answers the "
    "question, using only the tables and columns above."
)


def run_read_only(db: str, sql: str, *, max_rows: int = 100, timeout_s: float = 10.0) -> SqlResult:
    """Check `sql` (one read-only statement, else SqlRefused) and run it read-only on `db` (a
    SQLite file path or a postgresql:// URL) under `timeout_s`, keeping at most `max_rows`."""
    _check_limits(max_rows, timeout_s)
    with connect(db) as conn:
        return _run(conn, sql, max_rows, timeout_s)


def _run(conn: Database, sql: str, max_rows: int, timeout_s: float) -> SqlResult:
    checked = check_read_only(sql, conn.dialect)
    start = time.perf_counter()
    columns, rows, truncated = conn.query(checked, max_rows=max_rows, timeout_s=timeout_s)
    return SqlResult(checked, columns, rows, truncated, dialect=conn.dialect,
                     seconds=time.perf_counter() - start)  # fmt: skip


def _check_limits(max_rows: int, timeout_s: float) -> None:
    if max_rows < 1:
        raise HearthError(f"max_rows must be at least 1, got {max_rows}")
    if not timeout_s > 0:
        raise HearthError(f"timeout_s must be positive, got {timeout_s}")


def text_to_sql(
    question: str,
    db: str,
    model: ChatModel,
    *,
    max_rows: int = 100,
    timeout_s: float = 10.0,
    max_repairs: int = 2,
    constrained: bool = True,
) -> SqlResult:
    """Answer `question` over `db` with one read-only query the model writes (under the
    schema's SQL grammar when the model masks tokens and `constrained`). A question that is
    itself SQL is checked and run as is; a request to change data raises SqlRefused before
    any SQL is written; an execution error goes back to the model up to `max_repairs` times
    (each recorded in `repairs`). HearthError when no query ran."""
    question = question.strip()
    if not question:
        raise HearthError("empty question: ask something about the database")
    _check_limits(max_rows, timeout_s)
    if max_repairs < 0:
        raise HearthError(f"max_repairs must be 0 or more, got {max_repairs}")
    began = time.perf_counter()
    with connect(db) as conn:
        kind = looks_like_sql(question)
        if kind == "statement":
            try:  # refusals (stacked statements, writes) propagate from the check
                result = _run(conn, question, max_rows, timeout_s)
                result.question, result.seconds = question, time.perf_counter() - began
                return result
            except SqlExecutionError as exc:
                if "timeout" in str(exc):
                    raise
            except SqlRefused:
                raise
            except HearthError:
                pass  # "Select all customers from Paris" parses, but is a question
        refuse_write_request(question)
        if kind == "command":
            check_read_only(question, conn.dialect)  # VACUUM, REINDEX, ...: refused here
        schema = read_schema(conn)
        if not schema.tables:
            raise HearthError(f"{describe_db(db)} has no tables to query")
        result = _ask(question, conn, schema, model, max_rows, timeout_s, max_repairs,
                      constrained)  # fmt: skip
    result.question, result.seconds = question, time.perf_counter() - began
    return result


def _ask(question, conn, schema, model, max_rows, timeout_s, max_repairs, constrained):
    name = DIALECT_NAMES[schema.dialect]
    messages = [
        Message("system", SYSTEM.format(name=name, schema=schema.prompt(question, SCHEMA_CHARS))),
        Message("user", question),
    ]
    repairs: list[dict[str, str]] = []
    for attempt in range(max_repairs + 1):
        sql = generate_sql(model, messages, schema, constrained=constrained)
        if any(r["sql"] == sql for r in repairs):  # greedy decoding repeats itself: sample
            sql = generate_sql(model, messages, schema, constrained=constrained, seed=attempt)
        try:
            result = _run(conn, sql, max_rows, timeout_s)
            result.repairs = repairs
            return result
        except SqlRefused:
            raise  # the model wrote a write: never retried into something else
        except HearthError as exc:  # parse or execution error: shown to the model
            error = str(exc)
        repairs.append({"sql": sql, "error": error})
        messages += [
            Message("assistant", sql),
            Message("user", REPAIR.format(error=error, name=name)),
        ]
    last = repairs[-1]
    raise SqlExecutionError(
        f"no query ran on {describe_db(conn_name(conn))} after {max_repairs} repairs; "
        f"the last one ({last['sql']!r}) failed: {last['error']}"
    )


def conn_name(conn: Database) -> str:
    return str(getattr(conn, "url", None) or getattr(conn, "path", "the database"))


def generate_sql(
    model: ChatModel,
    messages: list[Message],
    schema: Schema,
    *,
    constrained: bool = True,
    seed: int | None = None,
) -> str:
    """The model's SQL for `messages`: under the schema's grammar when it can mask tokens,
    else free text with any markdown fence taken off (the check catches the rest). Greedy,
    or sampled at RESAMPLE_TEMPERATURE with `seed`."""
    params: dict = {"temperature": 0.0, "max_tokens": MAX_SQL_TOKENS}
    if seed is not None:
        params.update(temperature=RESAMPLE_TEMPERATURE, seed=seed)
    if constrained and getattr(model, "masks_tokens", False):
        from hearth.query.sql_grammar import sql_constraint

        params["constraint"] = sql_constraint(schema)
    text = model.chat(messages, **params).text
    return _unfenced(text)


def _unfenced(text: str) -> str:
    stripped = text.strip()
    if "```" in stripped:
        inside = stripped.split("```", 1)[1]
        if inside[:3].lower() == "sql":
            inside = inside[3:]
        stripped = inside.split("```", 1)[0]
    return stripped.strip().rstrip(";").strip()

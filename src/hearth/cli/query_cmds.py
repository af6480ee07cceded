"""`hearth sql`: a question about a SQLite file or a PostgreSQL database, answered by one
read-only query (thin shell over hearth.query.sql)."""

from __future__ import annotations

import json
import sys
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console()


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def sql(
    ctx: typer.Context,
    question: str = typer.Argument(
        ..., help="A question in words (or one SELECT statement) about the database."
    ),
    db: str = typer.Option(
        ..., "--db", help="A SQLite database file, or a postgresql://user@host/db URL."
    ),
    model: str | None = typer.Option(
        None,
        "--model",
        "-m",
        help="Model that writes the SQL (default: settings' instruct_model, "
        "HEARTH_INSTRUCT_MODEL).",
    ),
    max_rows: int = typer.Option(100, "--max-rows", min=1, help="Keep at most this many rows."),
    timeout: float = typer.Option(10.0, "--timeout", help="Stop the query after S seconds."),
    repairs: int = typer.Option(
        2, "--repairs", min=0, help="How many times an execution error goes back to the model."
    ),
    as_json: bool = typer.Option(
        False, "--json", help='Print one JSON object: {"sql", "columns", "rows", ...}.'
    ),
) -> None:
    """Answer a question about a database with one read-only SQL query (never writes)."""
    from hearth import llm
    from hearth.query.sql import text_to_sql

    app = ctx.obj
    settings = app.settings()
    chat_model = llm.load(model or settings.instruct_model, context_size=settings.context_size)
    result = text_to_sql(
        question, db, chat_model, max_rows=max_rows, timeout_s=timeout, max_repairs=repairs
    )
    if as_json:
        print_json(result.to_json())
        return
    console.print(f"[bold]sql[/] {escape(result.sql)}", highlight=False)
    for repair in result.repairs:
        console.print(
            f"[dim]repaired: {escape(repair['sql'])} -> {escape(repair['error'])}[/]",
            highlight=False,
        )
    table = Table(*[escape(c) for c in result.columns], show_lines=False)
    for row in result.rows:
        table.add_row(*["" if v is None else escape(str(v)) for v in row])
    console.print(table)
    more = " (row cap reached: more rows exist)" if result.truncated else ""
    console.print(f"[dim]{len(result.rows)} rows{more}[/]")


def register(app: typer.Typer) -> None:
    app.command("sql")(sql)

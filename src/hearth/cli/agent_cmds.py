"""`hearth agent TASK`: carry out a multi-step task with tools (search over the index, a
calculator, read-only SQL on --db) and print the steps and the answer, or one JSON object.

A thin shell over hearth.agents.run_agent: builds the AgentContext from the index, the
retriever and the database the flags name, and prints the trace.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from hearth.cli.index_cmds import print_json
from hearth.errors import HearthError

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def sql_runner(db: str, model: Any, *, max_rows: int = 50, timeout_s: float = 10.0):
    """AgentContext.sql for `db`: a question (or one SELECT) answered read-only by
    hearth.query.sql with `model` writing the SQL."""
    from hearth.query.sql import text_to_sql
    from hearth.query.sql_exec import describe_db, is_postgres

    if not is_postgres(db) and not Path(db).expanduser().is_file():
        raise HearthError(f"--db {db}: no such file (pass a SQLite file or a postgresql:// URL)")
    describe_db(db)

    def ask(question: str):
        return text_to_sql(question, db, model, max_rows=max_rows, timeout_s=timeout_s)

    return ask


def agent(
    ctx: typer.Context,
    task: str = typer.Argument(..., help="What to do, in plain words."),
    tools: str | None = typer.Option(
        None,
        "--tools",
        help="Comma-separated tools (default: search when an index exists, "
        "calculator, and sql with --db). Plugins add more (entry points 'hearth.tools').",
    ),
    db: str | None = typer.Option(
        None,
        "--db",
        help="A SQLite file or postgresql:// URL the sql tool may query (read-only).",
        metavar="FILE|URL",
    ),
    max_steps: int = typer.Option(
        6, "--max-steps", min=1, max=50, help="Tool-calling turns at most."
    ),
    time_budget: float = typer.Option(
        120.0, "--time-budget", min=1.0, help="Seconds the whole run may take.", metavar="S"
    ),
    model: str | None = typer.Option(
        None,
        "--model",
        help="Chat model spec (default: the instruct_model setting, HEARTH_INSTRUCT_MODEL).",
    ),
    mode: str = typer.Option(
        "auto",
        "--mode",
        help="auto (native tool calls when the model "
        "has them), native, or json (schema-held JSON actions).",
    ),
    allow_network: bool = typer.Option(
        False, "--allow-network", help="Let tools that declare network access use it."
    ),
    allow_writes: bool = typer.Option(
        False, "--allow-writes", help="Let tools that declare file writes write."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Carry out TASK with tools in a sandboxed ReAct loop; print every step and the answer."""
    from hearth.agents import AgentContext, run_agent

    if mode not in ("auto", "native", "json"):
        raise HearthError(f"--mode {mode!r}: use auto, native or json")
    app = ctx.obj
    settings = app.settings()
    names = [n.strip() for n in tools.split(",") if n.strip()] if tools is not None else None
    has_index = settings.db_path.exists() or "://" in str(settings.store)
    wants_search = names is None and has_index or (names is not None and "search" in names)
    context = AgentContext(allow_network=allow_network, allow_writes=allow_writes,
                           read_roots=(settings.db_path.parent,))  # fmt: skip
    try:
        if wants_search:
            app.store(create=False)
            context.search = app.retriever().retrieve
        chat = app.chat_model(model or settings.instruct_model)
        if db is not None:
            context.sql, context.db = sql_runner(db, chat), db
        elif names is not None and "sql" in names:
            raise HearthError("the sql tool needs a database: pass --db FILE or --db URL")
        steps_shown = 0

        def show(step) -> None:
            nonlocal steps_shown
            steps_shown += 1
            if not as_json:
                mark = "[green]ok[/]" if step.ok else "[red]error[/]"
                err.print(
                    f"[bold]{steps_shown}. {escape(step.tool)}[/] "
                    f"{escape(_short(step.input))} {mark} "
                    f"({step.elapsed_ms / 1000:.1f} s)\n   {escape(_short(step.output))}"
                )

        result = run_agent(
            task, model=chat, tools=names, context=context, max_steps=max_steps,
            time_budget_s=time_budget, on_step=show,
            native=None if mode == "auto" else mode == "native",
        )  # fmt: skip
    finally:
        app.close()
    if as_json:
        print_json(result.to_json())
        return
    if result.answer is None:
        out.print(f"[yellow]no answer[/] (stopped: {result.stopped})")
    else:
        out.print(escape(result.answer))
    for c in result.citations:
        out.print(f"  [{c.n}] {escape(c.source)}:{c.start}-{c.end}")
    err.print(
        f"[dim]{len(result.steps)} steps, {result.turns} turns, stopped: {result.stopped}, "
        f"{result.elapsed_ms / 1000:.1f} s ({result.model}, {result.mode})[/]"
    )


def _short(value: Any, limit: int = 160) -> str:
    import json

    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + " ..."


def register(app: typer.Typer) -> None:
    app.command("agent")(agent)

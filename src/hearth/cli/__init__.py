"""The `hearth` command line: a typer app whose commands are thin shells over the library.

Commands live in one module per group (index_cmds: ingest/search/status; ask_cmds: ask/chat).
"""

from __future__ import annotations

from pathlib import Path

import typer

from hearth.cli import (
    agent_cmds,
    ask_cmds,
    eval_cmds,
    generate_cmds,
    graph_cmds,
    index_cmds,
    models_cmds,
    query_cmds,
    serve_cmds,
    structured_cmds,
)
from hearth.cli.context import AppContext, run_guarded

app = typer.Typer(
    name="hearth",
    help="Ask your documents, offline, with exact citations.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    ctx: typer.Context,
    index: Path | None = typer.Option(
        None, "--index", help="Index folder (default ./.hearth, or HEARTH_INDEX).", metavar="DIR"
    ),
    embedder: str | None = typer.Option(
        None, "--embedder", help="Embedding model name or local folder (or HEARTH_EMBEDDER)."
    ),
    store: str | None = typer.Option(
        None,
        "--store",
        help="Where chunks and vectors live: the index folder's SQLite file (default) or "
        "postgresql://user:pass@host/db with pgvector (or HEARTH_STORE).",
        metavar="URL",
    ),
) -> None:
    ctx.obj = AppContext(index=index, embedder_name=embedder, store_url=store)


index_cmds.register(app)
ask_cmds.register(app)
generate_cmds.register(app)
serve_cmds.register(app)
models_cmds.register(app)
structured_cmds.register(app)
eval_cmds.register(app)
query_cmds.register(app)
agent_cmds.register(app)
graph_cmds.register(app)


def main() -> None:
    run_guarded(app)

"""`hearth graph build | show | query`: the knowledge graph of the indexed documents.

Thin shells over hearth.graph: build extracts triples with the instruction model, show prints
them (table, JSON) and draws them (self-contained HTML), query runs validated text-to-Cypher.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from hearth.cli.index_cmds import print_json

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

graph_app = typer.Typer(
    help="Knowledge graph: build it from the index, show it, query it with Cypher.",
    no_args_is_help=True,
)


def _graph_file(app) -> Path:
    from hearth.graph.store import graph_path

    return graph_path(app.settings().index)


@graph_app.command()
def build(
    ctx: typer.Context,
    model: str | None = typer.Option(
        None, "--model", help="Instruction model (default: settings instruct_model)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Extract (subject, relation, object) triples from every indexed chunk, resolve entities
    and store the graph in the index folder (only changed chunks are read again)."""
    from hearth.llm.llamacpp import prefer_passive_openmp

    prefer_passive_openmp()
    from hearth.graph.build import build_graph
    from hearth.graph.extract import TripleExtractor

    app = ctx.obj
    store = app.store(create=False)
    s = app.settings()
    spec = model or s.instruct_model
    chat = app.chat_model(spec)
    extractor = TripleExtractor(chat)
    embedder = app.embedder()
    if as_json:
        report = build_graph(
            store, _graph_file(app), extractor=extractor, embedder=embedder, model_name=spec
        )
        print_json(report.to_json())
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
    ) as bar:
        task = bar.add_task("extracting triples", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        report = build_graph(
            store,
            _graph_file(app),
            extractor=extractor,
            embedder=embedder,
            model_name=spec,
            progress=progress,
        )
    r = report
    console.print(
        f"{r.triples} triples, {r.entities} entities from {r.chunks} chunks "
        f"({r.extracted} read by {escape(spec)}, the rest unchanged) in {r.seconds:.1f}s; "
        f"{r.dropped} triple(s) dropped (evidence or names not in the chunk) -> {escape(r.db)}"
    )
    for f in r.failed:
        console.print(f"[yellow]skipped[/] chunk {f['chunk_id']} of {escape(f['source'])}: "
                      f"{escape(f['error'])}")  # fmt: skip


@graph_app.command()
def show(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help='Print {"triples": [...]}.'),
    out: Path | None = typer.Option(None, "--out", help="Write an interactive HTML picture."),
    entity: str | None = typer.Option(None, "--entity", help="Only triples touching NAME."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="At most N triples."),
) -> None:
    """Print the stored triples with their provenance, and draw them."""
    from hearth.graph.store import GraphStore

    app = ctx.obj
    with GraphStore(_graph_file(app)) as graph:
        triples = graph.triples(entity=entity, limit=limit)
        aliases = {e["name"]: e["aliases"] for e in graph.entities()}
    if out is not None:
        from hearth.graph.draw import render_html

        out.write_text(render_html(triples, aliases=aliases), encoding="utf-8")
    if as_json:
        keys = ("subject", "relation", "object", "source", "start", "end", "chunk_id")
        print_json({"triples": [{k: t[k] for k in keys} for t in triples]})
        return
    from rich.table import Table

    table = Table("subject", "relation", "object", "source", "chars")
    for t in triples:
        table.add_row(
            escape(t["subject"]),
            escape(t["relation"]),
            escape(t["object"]),
            escape(Path(t["source"]).name),
            f"{t['start']}-{t['end']}",
        )
    console.print(table)
    if out is not None:
        console.print(f"picture: {escape(str(out))}")


@graph_app.command()
def query(
    ctx: typer.Context,
    question: str | None = typer.Argument(None, help="A question in words."),
    cypher: str | None = typer.Option(
        None, "--cypher", help="Run this Cypher (validated) instead of asking the model."
    ),
    model: str | None = typer.Option(None, "--model", help="Instruction model."),
    limit: int = typer.Option(100, "--limit", min=1, max=10000, help="Most rows returned."),
    as_json: bool = typer.Option(False, "--json", help='Print {"cypher","columns","rows"}.'),
) -> None:
    """Text-to-Cypher over the graph: the query is validated (read-only, one statement, known
    labels and properties, LIMIT) before it runs on a read-only connection."""
    from hearth.errors import HearthError
    from hearth.graph.cypher import run_validated, text_to_cypher
    from hearth.graph.store import GraphStore

    if (question is None) == (cypher is None):
        raise HearthError("give a QUESTION or --cypher QUERY (one of them)")
    app = ctx.obj
    with GraphStore(_graph_file(app)) as graph:
        if cypher is None:
            from hearth.llm.llamacpp import prefer_passive_openmp

            prefer_passive_openmp()
            chat = app.chat_model(model or app.settings().instruct_model)
            cypher = text_to_cypher(chat, question, graph)
        result = run_validated(graph, cypher, max_limit=limit)
    if as_json:
        print_json(result.to_json())
        return
    from rich.table import Table

    console.print(f"[dim]{escape(result.cypher)}[/]")
    table = Table(*[escape(c) for c in result.columns])
    for row in result.rows:
        table.add_row(*[escape(str(v)) for v in row])
    console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(graph_app, name="graph")

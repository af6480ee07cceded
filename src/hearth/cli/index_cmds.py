"""`hearth ingest`, `hearth search` and `hearth status`: building and querying the index."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hearth.errors import HearthError
from hearth.types import Filters

console = Console()

RETRIEVERS = ("hybrid", "bm25", "dense")


def _ctx(ctx: typer.Context):
    return ctx.obj


def make_filters(
    source: str | None,
    types: list[str] | None,
    date_from: str | None = None,
    date_to: str | None = None,
) -> Filters | None:
    filters = Filters(
        source_glob=source,
        file_types=tuple(t.lower().lstrip(".") for t in types or ()) or None,
        date_from=_iso_day(date_from, "--date-from"),
        date_to=_iso_day(date_to, "--date-to"),
    )
    return None if filters.is_empty() else filters


def _iso_day(value: str | None, option: str) -> str | None:
    from datetime import date

    if value is None:
        return None
    try:
        return date.fromisoformat(value.strip()).isoformat()
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not a date: use YYYY-MM-DD", param_hint=option
        ) from None


def with_self_query(app, model_spec: str | None):
    """A function from a request to (query, filters, self-query JSON): hearth.query.self_query
    splits the request into a search query and filters (with the instruct model unless
    `model_spec` is "none"); filters given as options win over the ones it finds."""
    from hearth.query.self_query import IndexFacts, self_query

    facts = IndexFacts.of(app.store(create=False).list_documents())
    spec = model_spec or app.settings().instruct_model
    model = None if spec == "none" else app.chat_model(spec)

    def split(request: str, filters: Filters | None):
        found = self_query(request, facts, model, given=filters)
        narrowed = None if found.filters.is_empty() else found.filters
        return found.query, narrowed, found.to_json()

    return split


def copies_line(duplicates: list) -> str | None:
    """The dim "same text also in: ..." line under a hit whose text other chunks repeat."""
    sources = sorted({d.source for d in duplicates})
    return f"[dim]same text also in: {escape(', '.join(sources))}[/]" if sources else None


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def ingest(
    ctx: typer.Context,
    paths: list[str] = typer.Argument(
        ..., help="Files, folders (recursive) or globs (quote them)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Add or update documents in the index (incremental: unchanged files cost nothing)."""
    from hearth.index.indexer import Indexer

    app = _ctx(ctx)
    s = app.settings()
    indexer = Indexer.from_settings(app.store(), app.embedder(), s)
    report = indexer.ingest(list(paths), progress=progress and not as_json and sys.stderr.isatty())
    result = {
        "added": report.added,
        "updated": report.updated,
        "unchanged": report.unchanged,
        "removed": report.removed,
        "skipped": list(report.skipped),
        "documents": report.documents,
        "chunks": report.chunks,
    }
    app.close()
    if as_json:
        print_json(result)
        return
    console.print(
        f"[bold]ingested[/] into {s.index}: added {report.added}, updated {report.updated}, "
        f"unchanged {report.unchanged}, removed {report.removed}, skipped {len(report.skipped)} "
        f"- index now holds {report.documents} documents, {report.chunks} chunks"
    )
    shown = 20
    for item in report.skipped[:shown]:
        console.print(
            f"  [yellow]skipped[/] {escape(item['path'])}: {escape(item['reason'])}",
            highlight=False,
        )
    if len(report.skipped) > shown:
        console.print(f"  ... and {len(report.skipped) - shown} more (see --json for all)")


def _read_queries(path: Path) -> list[tuple[str, str]]:
    """A text file (one query a line) or JSONL ({"id", "text"}); returns (id, text) pairs."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise HearthError(f"cannot read queries file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise HearthError(f"queries file {path} is not UTF-8 text") from None
    queries: list[tuple[str, str]] = []
    for lineno, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue
        if line.startswith("{"):
            try:
                obj = json.loads(line)
                queries.append((str(obj.get("id", lineno)), str(obj["text"])))
            except (json.JSONDecodeError, KeyError, AttributeError) as exc:
                raise HearthError(
                    f"{path}:{lineno}: expected a JSON object with a 'text' field ({exc})"
                ) from None
        else:
            queries.append((str(len(queries) + 1), line))
    return queries


STRATEGY_HELP = (
    "standard (default, no model call), multi-query, hyde, rag-fusion, step-back, decompose, "
    "or auto (routed). Strategies other than standard call the instruction model."
)
RERANK_HELP = "none (default), late-interaction, llm-pointwise or llm-listwise."
MMR_HELP = "Diversify with maximal marginal relevance: lambda, 1 = relevance only."
COMPRESS_HELP = "Keep only the sentences of each passage that bear on the query."


def retrieval_json(pipeline: str, found) -> dict:
    """`hearth search --json`: the hits, the pipeline that found them and what each of its
    stages generated (paraphrases, a hypothetical answer, a route...)."""
    from hearth.rag.retrievers import hit_to_json

    return {
        "hits": [hit_to_json(h) for h in found.hits],
        "pipeline": pipeline,
        "stages": found.generated,
        "timings": {name: round(t, 4) for name, t in found.timings.items()},
    }


def search(
    ctx: typer.Context,
    query: str | None = typer.Argument(None, help="What to look for."),
    k: int = typer.Option(None, "-k", "--top-k", help="How many passages.", min=1, max=100),
    retriever: str = typer.Option(None, "--retriever", help="hybrid (default), bm25 or dense."),
    strategy: str | None = typer.Option(None, "--strategy", help=STRATEGY_HELP),
    rerank: str | None = typer.Option(None, "--rerank", help=RERANK_HELP),
    mmr: float | None = typer.Option(None, "--mmr", min=0.0, max=1.0, help=MMR_HELP),
    compress: bool | None = typer.Option(None, "--compress/--no-compress", help=COMPRESS_HELP),
    source: str | None = typer.Option(None, "--source", help="Only sources matching this glob."),
    types: list[str] | None = typer.Option(
        None, "--type", help="Only these file types (md, pdf...)."
    ),
    date_from: str | None = typer.Option(
        None, "--date-from", metavar="YYYY-MM-DD", help="Only documents dated on or after this."
    ),
    date_to: str | None = typer.Option(
        None, "--date-to", metavar="YYYY-MM-DD", help="Only documents dated on or before this."
    ),
    self_query: bool = typer.Option(
        False,
        "--self-query",
        help='Read filters out of the query ("PDFs about pumps from 2024" -> file type, dates '
        "and the query 'pumps') and show both.",
    ),
    model: str | None = typer.Option(
        None,
        "--model",
        help="Model for --self-query (default: the instruct_model setting; 'none': its "
        "patterns alone).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    queries: Path | None = typer.Option(
        None,
        "--queries",
        help="Run every query in FILE (text lines or JSONL id/text); JSON lines out.",
    ),
) -> None:
    """Find the passages that best match a query."""
    app = _ctx(ctx)
    s = app.settings()
    if retriever is not None and retriever not in RETRIEVERS:
        raise HearthError(f"unknown retriever {retriever!r}: choose one of {', '.join(RETRIEVERS)}")
    if query is None and queries is None:
        raise HearthError("give a QUERY or --queries FILE")
    k = k or s.top_k
    filters = make_filters(source, types, date_from, date_to)
    app.store(create=False)
    ret = app.retriever(retriever, strategy=strategy, rerank=rerank, mmr=mmr, compress=compress)

    split = with_self_query(app, model) if self_query else None

    def run(text: str) -> tuple[Any, dict[str, Any]]:
        if split is None:
            return ret.run(text, k=k, filters=filters), {}
        searched, narrowed, shown = split(text, filters)
        return ret.run(searched, k=k, filters=narrowed), {"self_query": shown}

    if queries is not None:
        for qid, text in _read_queries(queries):
            found, extra = run(text)
            print_json({"id": qid, "query": text, **extra, **retrieval_json(ret.name, found)})
        return
    found, extra = run(query)
    hits = found.hits
    if as_json:
        print_json({**extra, **retrieval_json(ret.name, found)})
        return
    if shown := extra.get("self_query"):
        filters_text = json.dumps(shown["filters"], ensure_ascii=False) if shown["filters"] else "-"
        console.print(
            f"[dim]self-query ({shown['by']}): query {escape(repr(shown['query']))}, "
            f"filters {escape(filters_text)}[/]",
            highlight=False,
        )
        for note in shown["notes"]:
            console.print(f"[dim]  {escape(note)}[/]", highlight=False)
    for stage, info in found.generated.items():
        console.print(f"[dim]{escape(stage)}: {escape(json.dumps(info, ensure_ascii=False))}[/]")
    if not hits:
        console.print("no matching passages")
        return
    for rank, hit in enumerate(hits, 1):
        c = hit.chunk
        where = _where(c)
        console.print(
            f"[bold cyan]{rank}.[/] {escape(c.source + where)}  [dim]score {hit.score:.4f}[/]",
            highlight=False,
        )
        console.print("   " + escape(c.text.replace("\n", " ")[:300]), highlight=False)
        if copies := copies_line(hit.duplicates):
            console.print("   " + copies, highlight=False)


def _effective_context(spec: str) -> int | None:
    from hearth import llm

    try:
        return llm.load(spec).context_size  # cheap: no weights, no network
    except HearthError:
        return None


def _where(chunk) -> str:
    parts = []
    if chunk.page:
        parts.append(f"page {chunk.page}")
    if chunk.headings:
        parts.append(" > ".join(chunk.headings))
    if path := chunk.metadata.get("json_path"):
        parts.append(path)
    if (row := chunk.metadata.get("row")) is not None:
        parts.append(f"row {row}")
    return f" ({'; '.join(parts)})" if parts else ""


def _human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _model_file(spec: str) -> str | None:
    """The weights file a model spec resolves to, or None when it does not resolve."""
    from hearth import llm

    try:
        return str(getattr(llm.load(spec), "path", "")) or None
    except HearthError:
        return None


def status(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Show the effective configuration and what the index holds."""
    app = _ctx(ctx)
    s = app.settings()
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in s.model_dump().items()}
    if config["context_size"] is None:  # show what the model will really get
        config["context_size"] = _effective_context(s.model)
    from hearth.index.stores import is_postgres_url

    stats: dict[str, Any] = {}
    in_postgres = is_postgres_url(s.store)
    if in_postgres:
        from hearth.index.pg_store import redact_url

        config["store"] = redact_url(s.store)  # never print the password
    if in_postgres or s.db_path.exists():
        stats = app.store().stats()
    result = {
        "index": str(s.index.resolve()),
        "exists": in_postgres or s.db_path.exists(),
        "config": config,
        "model_file": _model_file(s.model),
        **stats,
    }
    if as_json:
        print_json(result)
        return
    table = Table(title="hearth status", show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    table.add_row("index", result["index"] + ("" if result["exists"] else "  (not created yet)"))
    if stats:
        table.add_row("documents", str(stats["documents"]))
        table.add_row("chunks", str(stats["chunks"]))
        for ftype, counts in sorted(stats.get("by_file_type", {}).items()):
            table.add_row(
                f"  {ftype}", f"{counts['documents']} documents, {counts['chunks']} chunks"
            )
        table.add_row("size on disk", _human_bytes(stats.get("db_bytes", 0)))
        emb = stats.get("embedder") or {}
        if emb:
            table.add_row(
                "index embedder", f"{emb['name']} ({emb['dim']}-d), embeds {emb['input']}"
            )
        if stats.get("last_ingest_at"):
            when = datetime.fromtimestamp(stats["last_ingest_at"]).isoformat(timespec="seconds")
            table.add_row("last ingest", when)
    table.add_row("chat model", f"{s.model}  [dim]{result['model_file'] or 'not found'}[/]")
    for key, value in config.items():
        table.add_row(f"config.{key}", str(value))
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command()(ingest)
    app.command()(search)
    app.command()(status)

"""`hearth ask` and `hearth chat`: grounded answers with verified citations, streamed."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from hearth.cli.index_cmds import (
    COMPRESS_HELP,
    MMR_HELP,
    RERANK_HELP,
    STRATEGY_HELP,
    copies_line,
    make_filters,
    print_json,
)

console = Console(highlight=False)


def _answerer(
    app,
    model: str | None,
    max_tokens: int | None,
    temperature: float | None,
    retriever,
    **stages: Any,
):
    from hearth.rag.answer import Answerer

    s = app.settings()
    return Answerer(
        app.retriever(retriever, **stages),
        app.chat_model(model),
        app.embedder(),
        max_tokens=max_tokens or s.max_tokens,
        temperature=s.temperature if temperature is None else temperature,
        min_relevance=s.min_relevance,
    )


MODEL_HELP = (
    "local:smollm2, a PATH.gguf, engine:smollm2, ollama:NAME, openai:NAME, anthropic:NAME, "
    "openai:NAME@URL ... (docs/models.md)."
)


def print_answer_tail(answer, streamed_text: str | None) -> None:
    """After the answer text: what citation checking changed, trimming notes, the sources."""
    if answer.fallback:
        console.print(
            "\n[yellow]The model's answer is not supported by the passages; "
            "the best supporting passage instead:[/]"
        )
        console.print(answer.text, markup=False, highlight=False)
    elif streamed_text is not None and answer.found and streamed_text.strip() != answer.text:
        console.print("\n[bold]Answer with checked citations:[/]")
        console.print(answer.text, markup=False, highlight=False)
    if answer.dropped_passages:
        console.print(
            f"[yellow]note:[/] {answer.dropped_passages} lowest-ranked passage(s) were left out "
            "to fit the model's context window"
        )
    print_sources(answer.citations, answer.passages)


def print_sources(citations, passages) -> None:
    """The numbered sources: file, page and headings, character span, the quoted text."""
    if not citations:
        return
    console.print("\n[bold]Sources[/]")
    copies = {hit.chunk.id: hit.duplicates for hit in passages}
    for c in citations:
        where = []
        if c.page:
            where.append(f"page {c.page}")
        if c.headings:
            where.append(" > ".join(c.headings))
        loc = f" ({'; '.join(where)})" if where else ""
        console.print(
            f"[bold cyan]\\[{c.n}][/] {escape(c.source + loc)} [dim]chars {c.start}-{c.end}[/]"
        )
        quoted = " ".join(c.text.split())
        console.print(f'    [italic]"{escape(quoted)}"[/]')
        if line := copies_line(copies.get(c.chunk_id, [])):
            console.print("    " + line)


def show_answer(events: Iterator[Any], *, stream: bool = True):
    """Print one answer from its event stream (text deltas, then the final Answer).

    On a terminal the streamed words are replaced in place by the checked answer; in a pipe
    the raw stream is printed, then the checked answer when citation checking changed it.
    Returns the final Answer.
    """
    if not stream:
        answer = next(e for e in events if not isinstance(e, str))
        console.print(answer.text, markup=False, highlight=False)
        print_answer_tail(answer, None)
        return answer
    if console.is_terminal:
        return _stream_live(events)
    streamed: list[str] = []
    answer = None
    for event in events:
        if isinstance(event, str):
            streamed.append(event)
            sys.stdout.write(event)
            sys.stdout.flush()
        else:
            answer = event
    sys.stdout.write("\n")
    print_answer_tail(answer, "".join(streamed))
    return answer


def _stream_live(events):
    from rich.live import Live
    from rich.text import Text

    shown = Text()
    answer = None
    with Live(shown, console=console, refresh_per_second=12, transient=False) as live:
        for event in events:
            if isinstance(event, str):
                shown.append(event)
                live.update(shown)
            else:
                answer = event
        if not answer.fallback:
            live.update(Text(answer.text))
    print_answer_tail(answer, None)
    return answer


def ask(
    ctx: typer.Context,
    question: str = typer.Argument(..., help="Your question."),
    k: int = typer.Option(None, "-k", "--top-k", help="Passages to retrieve.", min=1, max=50),
    extractive: bool = typer.Option(
        False, "--extractive", help="Answer with the best supporting span, no paraphrase."
    ),
    model: str | None = typer.Option(None, "--model", help=MODEL_HELP),
    retriever: str | None = typer.Option(None, "--retriever", help="hybrid, bm25 or dense."),
    strategy: str | None = typer.Option(None, "--strategy", help=STRATEGY_HELP),
    rerank: str | None = typer.Option(None, "--rerank", help=RERANK_HELP),
    mmr: float | None = typer.Option(None, "--mmr", min=0.0, max=1.0, help=MMR_HELP),
    compress: bool | None = typer.Option(None, "--compress/--no-compress", help=COMPRESS_HELP),
    source: str | None = typer.Option(None, "--source", help="Only sources matching this glob."),
    types: list[str] | None = typer.Option(None, "--type", help="Only these file types."),
    date_from: str | None = typer.Option(
        None, "--date-from", metavar="YYYY-MM-DD", help="Only documents dated on or after this."
    ),
    date_to: str | None = typer.Option(
        None, "--date-to", metavar="YYYY-MM-DD", help="Only documents dated on or before this."
    ),
    max_tokens: int | None = typer.Option(None, "--max-tokens", min=1),
    temperature: float | None = typer.Option(None, "--temperature", min=0.0, max=2.0),
    stream: bool = typer.Option(True, "--stream/--no-stream", help="Stream tokens as they come."),
    schema_file: Path | None = typer.Option(
        None,
        "--schema",
        metavar="FILE",
        help="A JSON Schema file: answer with an object that fits it, each value cited.",
    ),
    graph: bool = typer.Option(
        False, "--graph", help="Add knowledge-graph neighbours' passages (hearth graph build)."
    ),
    hops: int = typer.Option(2, "--hops", min=1, max=4, help="Graph hops with --graph."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Answer a question from the indexed documents, citing the passages used."""
    from hearth.llm.llamacpp import prefer_passive_openmp

    prefer_passive_openmp()  # before torch / llama.cpp load
    app = ctx.obj
    app.store(create=False)
    answerer = _answerer(
        app,
        model,
        max_tokens,
        temperature,
        retriever,
        strategy=strategy,
        rerank=rerank,
        mmr=mmr,
        compress=compress,
    )
    if graph:
        from hearth.graph.retrieve import GraphRetriever, open_graph

        answerer.retriever = GraphRetriever(
            answerer.retriever, open_graph(app.settings()), app.store(), hops=hops
        )
    k = k or app.settings().top_k
    filters = make_filters(source, types, date_from, date_to)
    if schema_file is not None:
        if extractive:
            raise typer.BadParameter("--schema and --extractive do not go together")
        _ask_structured(answerer, question, schema_file, k, filters, as_json)
        return
    if as_json:
        answer = answerer.answer(question, k=k, filters=filters, extractive=extractive)
        print_json(answer.to_json())
        return
    events = answerer.stream(question, k=k, filters=filters, extractive=extractive)
    show_answer(events, stream=stream)


def _ask_structured(answerer, question: str, schema_file: Path, k: int, filters, as_json: bool):
    import json

    from hearth.cli.structured_cmds import read_schema
    from hearth.rag.structured_answer import answer_with_schema
    from hearth.structured import compile

    constraint = compile(read_schema(schema_file))  # an unenforceable keyword fails here
    result = answer_with_schema(answerer, question, constraint, k=k, filters=filters)
    if as_json:
        print_json(result.to_json())
        return
    if not result.found:
        from hearth.rag.answer import NOT_FOUND_TEXT

        console.print(NOT_FOUND_TEXT, markup=False)
        return
    typer.echo(json.dumps(result.to_json()["object"], ensure_ascii=False, indent=2))
    marks = {f.path: f.cited for f in result.fields if f.cited}
    for path, cited in marks.items():
        console.print(f"[dim]{escape(path)}[/] " + escape("".join(f"[{n}]" for n in cited)))
    if result.unsupported:
        console.print(
            "[yellow]not supported by any passage:[/] " + escape(", ".join(result.unsupported))
        )
    print_sources(result.citations, result.passages)


def chat(
    ctx: typer.Context,
    session: str = typer.Option("default", "--session", help="Conversation to start or resume."),
    k: int = typer.Option(None, "-k", "--top-k", min=1, max=50),
    extractive: bool = typer.Option(False, "--extractive"),
    model: str | None = typer.Option(None, "--model", help=MODEL_HELP),
) -> None:
    """Talk with your documents; follow-ups are rewritten into standalone queries."""
    from hearth.llm.llamacpp import prefer_passive_openmp

    prefer_passive_openmp()  # before torch / llama.cpp load
    from hearth.rag.chat import ChatSession

    app = ctx.obj
    app.store(create=False)
    answerer = _answerer(app, model, None, None, None)
    k = k or app.settings().top_k
    convo = ChatSession(app.store(), session)
    if convo.resumed:
        console.print(f"[dim]resuming session {session!r} ({len(convo.messages)} messages)[/]")
    console.print("[dim]ask a question; /exit or Ctrl-D to leave[/]")
    while True:
        try:
            line = input("you> ").strip()
        except EOFError:
            console.print()
            break
        if not line:
            continue
        if line in {"/exit", "/quit"}:
            break
        turns = convo.stream(line, answerer, answerer.model, k=k, extractive=extractive)
        turn = None

        def answers(turns=turns):
            nonlocal turn
            for event in turns:
                if isinstance(event, str):
                    yield event
                else:
                    turn = event
                    yield event.answer

        sys.stdout.write("hearth> ")
        show_answer(answers())
        if turn is not None and turn.condensed.query != line:
            console.print(f"[dim](searched for: {escape(turn.condensed.query)})[/]")


def register(app: typer.Typer) -> None:
    app.command()(ask)
    app.command()(chat)

"""`hearth ask` and `hearth chat`: grounded answers with verified citations, streamed."""

from __future__ import annotations

import sys
from typing import Any

import typer
from rich.console import Console

from hearth.cli.index_cmds import make_filters, print_json

console = Console(highlight=False)


def _answerer(app, model: str | None, max_tokens: int | None, temperature: float | None, retriever):
    from hearth.rag.answer import Answerer

    s = app.settings()
    return Answerer(
        app.retriever(retriever),
        app.chat_model(model),
        app.embedder(),
        max_tokens=max_tokens or s.max_tokens,
        temperature=s.temperature if temperature is None else temperature,
        min_relevance=s.min_relevance,
    )


def print_answer_tail(answer, streamed_text: str | None) -> None:
    """After the answer text: what citation checking changed, trimming notes, the sources."""
    if streamed_text is not None and answer.found and streamed_text.strip() != answer.text.strip():
        console.print("\n[bold]Answer with checked citations:[/]")
        console.print(answer.text)
    if answer.dropped_passages:
        console.print(
            f"[yellow]note:[/] {answer.dropped_passages} lowest-ranked passage(s) were left out "
            "to fit the model's context window"
        )
    if not answer.citations:
        return
    console.print("\n[bold]Sources[/]")
    for c in answer.citations:
        where = []
        if c.page:
            where.append(f"page {c.page}")
        if c.headings:
            where.append(" > ".join(c.headings))
        loc = f" ({'; '.join(where)})" if where else ""
        console.print(f"[bold cyan][{c.n}][/] {c.source}{loc} [dim]chars {c.start}-{c.end}[/]")
        quoted = " ".join(c.text.split())
        console.print(f'    [italic]"{quoted}"[/]')


def run_answer(
    answerer, question: str, *, k: int, filters, extractive: bool, stream: bool, history=None
):
    """Stream (or not) one answer to the terminal; returns the final Answer."""
    if not stream:
        answer = answerer.answer(
            question, k=k, filters=filters, extractive=extractive, history=history
        )
        console.print(answer.text)
        print_answer_tail(answer, None)
        return answer
    streamed: list[str] = []
    answer = None
    for event in answerer.stream(
        question, k=k, filters=filters, extractive=extractive, history=history
    ):
        if isinstance(event, str):
            streamed.append(event)
            sys.stdout.write(event)
            sys.stdout.flush()
        else:
            answer = event
    if not streamed and answer is not None:
        sys.stdout.write(answer.text)
    sys.stdout.write("\n")
    print_answer_tail(answer, "".join(streamed) if streamed else None)
    return answer


def ask(
    ctx: typer.Context,
    question: str = typer.Argument(..., help="Your question."),
    k: int = typer.Option(None, "-k", "--top-k", help="Passages to retrieve.", min=1, max=50),
    extractive: bool = typer.Option(
        False, "--extractive", help="Answer with the best supporting span, no paraphrase."
    ),
    model: str | None = typer.Option(None, "--model", help="local:smollm2 or a PATH.gguf."),
    retriever: str | None = typer.Option(None, "--retriever", help="hybrid, bm25 or dense."),
    source: str | None = typer.Option(None, "--source", help="Only sources matching this glob."),
    types: list[str] | None = typer.Option(None, "--type", help="Only these file types."),
    max_tokens: int | None = typer.Option(None, "--max-tokens", min=1),
    temperature: float | None = typer.Option(None, "--temperature", min=0.0, max=2.0),
    stream: bool = typer.Option(True, "--stream/--no-stream", help="Stream tokens as they come."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Answer a question from the indexed documents, citing the passages used."""
    app = ctx.obj
    app.store(create=False)
    answerer = _answerer(app, model, max_tokens, temperature, retriever)
    k = k or app.settings().top_k
    filters = make_filters(source, types)
    if as_json:
        answer = answerer.answer(question, k=k, filters=filters, extractive=extractive)
        print_json(answer.to_json())
        return
    run_answer(answerer, question, k=k, filters=filters, extractive=extractive, stream=stream)


def chat(
    ctx: typer.Context,
    session: str = typer.Option("default", "--session", help="Conversation to start or resume."),
    k: int = typer.Option(None, "-k", "--top-k", min=1, max=50),
    extractive: bool = typer.Option(False, "--extractive"),
    model: str | None = typer.Option(None, "--model", help="local:smollm2 or a PATH.gguf."),
) -> None:
    """Talk with your documents; follow-ups are rewritten into standalone queries."""
    from hearth.rag.chat import ChatSession, condense_question

    app = ctx.obj
    app.store(create=False)
    answerer = _answerer(app, model, None, None, None)
    k = k or app.settings().top_k
    convo = ChatSession(app.store(), session)
    history = convo.messages()
    if history:
        console.print(f"[dim]resuming session {session!r} ({len(history)} messages)[/]")
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
        history = convo.messages()
        query = condense_question(history, line, answerer.model) if history else line
        if query != line:
            console.print(f"[dim](searching for: {query})[/]")
        sys.stdout.write("hearth> ")
        answer = _chat_turn(answerer, query, k, extractive, history)
        convo.add("user", line)
        convo.add("assistant", answer.text)


def _chat_turn(answerer, query: str, k: int, extractive: bool, history) -> Any:
    return run_answer(
        answerer, query, k=k, filters=None, extractive=extractive, stream=True, history=history
    )


def register(app: typer.Typer) -> None:
    app.command()(ask)
    app.command()(chat)

"""The `hearth-rag` model: the last user message is the question, earlier turns the history;
the answer comes from hearth.rag.answer.Answerer with its verified citations as data.

Follow-ups are condensed into standalone queries the way `hearth chat` does (rag.chat.condense).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from hearth.rag.answer import Answer, Answerer
from hearth.rag.chat import condense
from hearth.serve.errors import APIError
from hearth.serve.generation import Delta, Finish, Item, UsageRecorder
from hearth.serve.schemas import ChatMessage, RagOptions
from hearth.serve.state import ServedIndex
from hearth.types import ChatModel, Filters, Message

HISTORY_MESSAGES = 6  # as `hearth chat`: older turns rarely help a 2k-token context


def split_conversation(messages: list[ChatMessage]) -> tuple[str, list[Message]]:
    """(question, history): the last message must be a non-empty user message; system and
    developer messages are left out (the grounded prompt brings its own instruction)."""
    last = messages[-1]
    question = last.text().strip()
    if last.role != "user" or not question:
        raise APIError(
            400,
            "hearth-rag answers the last message, which must be a non-empty user message",
            code="invalid_value",
            param="messages",
        )
    history = [
        Message(m.role, m.text())  # type: ignore[arg-type]
        for m in messages[:-1]
        if m.role in ("user", "assistant") and m.text().strip()
    ]
    return question, history[-HISTORY_MESSAGES:]


def make_filters(options: Any) -> Filters | None:
    """Filters from a request's `filters` field (RagOptions, SearchRequest), None if empty."""
    given = getattr(options, "filters", None)
    if given is None:
        return None
    types = tuple(t.lower().lstrip(".") for t in given.file_types or ()) or None
    filters = Filters(
        source_glob=given.source_glob or None,
        file_types=types,
        date_from=given.date_from.isoformat() if given.date_from else None,
        date_to=given.date_to.isoformat() if given.date_to else None,
    )
    return None if filters.is_empty() else filters


def citations_json(answer: Answer) -> list[dict[str, Any]]:
    """The answer's sources as the API returns them (document ids from the passages)."""
    documents = {hit.chunk.id: hit.chunk.document_id for hit in answer.passages}
    return [
        {
            "n": c.n,
            "source": c.source,
            "document_id": documents.get(c.chunk_id),
            "chunk_id": c.chunk_id,
            "start": c.start,
            "end": c.end,
            "text": c.text,
            "page": c.page,
            "headings": list(c.headings),
        }
        for c in answer.citations
    ]


def rag_events(
    index: ServedIndex,
    model: ChatModel,
    question: str,
    history: list[Message],
    options: RagOptions | None,
    *,
    n: int,
    max_tokens: int,
    temperature: float,
    graph: bool = False,
) -> Iterator[Item]:
    """Raw answer words as Deltas, then a Finish with the verified answer and its citations
    (for each of the `n` choices). With `graph` (hearth-graph) the context also holds the
    knowledge graph's neighbours of the question's entities. Blocking: run it in a worker
    thread."""
    options = options or RagOptions()
    settings = index.settings
    recorder = UsageRecorder(model)
    if graph:
        retriever = index.graph_retriever(
            options.retriever, options.strategy, options.rerank, options.hops
        )
    else:
        retriever = index.retriever(options.retriever, options.strategy, options.rerank)
    answerer = Answerer(
        retriever,
        recorder,
        index.models.embedder(),
        max_tokens=max_tokens,
        temperature=temperature,
        min_relevance=settings.min_relevance,
    )
    query = condense(history, question, model).query if history else question
    k = options.k or settings.top_k
    filters = make_filters(options)
    for i in range(n):
        recorder.reset()
        events = answerer.stream(
            query, k=k, filters=filters, extractive=options.extractive, history=history
        )
        try:
            for event in events:
                if isinstance(event, str):
                    if event:
                        yield Delta(i, event)
                    continue
                yield Finish(
                    i,
                    event.finish_reason or "stop",
                    recorder.usage,
                    answer=event.text,
                    citations=citations_json(event),
                )
        finally:
            events.close()


def check_graph_request(index: ServedIndex, model_id: str, options: RagOptions | None) -> None:
    """400 before any work: `hops` on a model without a graph, or hearth-graph without one."""
    from hearth.serve.config import GRAPH_MODEL_ID

    if model_id != GRAPH_MODEL_ID:
        if options is not None and options.hops is not None:
            raise APIError(400, f"hops applies to model {GRAPH_MODEL_ID!r} only",
                           code="invalid_value", param="hearth.hops")  # fmt: skip
        return
    if not index.has_graph():
        raise APIError(
            400,
            f"{GRAPH_MODEL_ID} needs the index's knowledge graph: run `hearth graph build` "
            "on this index first",
            code="graph_not_built",
            param="model",
        )

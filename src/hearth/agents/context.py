"""What an agent run may touch: AgentContext (built by the CLI or the HTTP layer from its own
store, retriever and database) and ToolEnv (one run's view of it, handed to the tools).

Hand-written: a plain dataclass per job; nothing here opens a file or a socket itself.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hearth.types import ChatModel, ScoredChunk

SEARCH_K = 4  # passages one search returns
PASSAGE_CHARS = 500  # characters of each passage the model is shown


@dataclass
class AgentContext:
    """The capabilities a run is given; anything not here, no tool can reach.

    - `search(query, k) -> list[ScoredChunk]`: the index (a retrieval pipeline's `retrieve`);
      the `search` tool reads nothing else.
    - `sql(question) -> result` with `.sql`, `.columns`, `.rows` (hearth.query.sql.text_to_sql
      bound to one database and model by the caller); `db` is that database's path or URL,
      the only database file a tool may open.
    - `allow_network` / `allow_writes`: tools that declare they need the network or write
      files are refused unless these are set (nothing built in needs either).
    - `read_roots`: folders tools may read (the index folder); Python's own files are
      always readable so tools can import lazily.
    """

    search: Callable[[str, int], Sequence[ScoredChunk]] | None = None
    sql: Callable[[str], Any] | None = None
    db: str | Path | None = None
    allow_network: bool = False
    allow_writes: bool = False
    read_roots: tuple[Path, ...] = ()
    search_k: int = SEARCH_K

    @classmethod
    def from_retriever(cls, retriever: Any, *, index_dir: Path | None = None, **kw: Any):
        """A context whose `search` is `retriever.retrieve` (a RetrievalPipeline, or any
        Retriever): what the CLI and the HTTP layer build from their store and embedder."""
        roots = (Path(index_dir),) if index_dir is not None else ()
        return cls(search=retriever.retrieve, read_roots=roots + tuple(kw.pop("read_roots", ())),
                   **kw)  # fmt: skip


@dataclass(frozen=True)
class Citation:
    """A passage a search step returned, numbered [n] as the model saw it."""

    n: int
    source: str
    start: int
    end: int
    text: str
    document_id: int | None = None
    chunk_id: int | None = None
    page: int | None = None
    headings: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"n": self.n, "source": self.source, "start": self.start, "end": self.end,
                "text": self.text, "document_id": self.document_id, "chunk_id": self.chunk_id,
                "page": self.page, "headings": list(self.headings)}  # fmt: skip


@dataclass
class ToolEnv:
    """One run's handle for tools: the context, the model (for tools that ask it, like sql)
    and the passages found so far. A tool gets it by annotating a parameter `ToolEnv`."""

    context: AgentContext
    model: ChatModel | None = None
    citations: list[Citation] = field(default_factory=list)
    abandoned: bool = False  # a tool that uses the model timed out and may still be running
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def cite(self, hit: ScoredChunk) -> Citation:
        """The passage's citation, numbered on first sight (the same passage keeps its n)."""
        chunk = hit.chunk
        with self._lock:
            for c in self.citations:
                if (c.source, c.start, c.end) == (chunk.source, chunk.start, chunk.end):
                    return c
            c = Citation(len(self.citations) + 1, chunk.source, chunk.start, chunk.end,
                         chunk.text, chunk.document_id, chunk.id, chunk.page,
                         tuple(chunk.headings))  # fmt: skip
            self.citations.append(c)
            return c

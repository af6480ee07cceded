"""What a retrieval pipeline stage returns: the hits plus what its model calls generated.

Shared by the query strategies (hearth.rag.strategies), the post-processing stages and the
commands that print `--json`; hand-written because it is Hearth's own record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hearth.types import ScoredChunk


@dataclass
class Retrieval:
    """Hits in rank order and, per stage that ran, what it generated or decided.

    `generated` maps a stage name ("multi-query", "hyde", "rerank", "route", ...) to a
    JSON-ready dict, e.g. {"multi-query": {"queries": [...]}}; `timings` maps a stage name to
    seconds spent in it.
    """

    hits: list[ScoredChunk]
    generated: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

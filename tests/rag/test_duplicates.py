"""Identical passages count once: every retriever returns k different texts and lists copies."""

from __future__ import annotations

import pytest

from hearth.index.store import SQLiteStore
from hearth.rag.retrievers import (
    BM25Retriever,
    DenseRetriever,
    HybridRetriever,
    collapse_duplicates,
    hit_to_json,
    make_retriever,
    passage_key,
    unique_top,
)
from hearth.types import Chunk, Document, ScoredChunk

HANDBOOK = [
    "To reset the door code, hold the star key for five seconds and enter the new code.",
    "The boiler needs a yearly service before the heating season starts.",
    "Spare keys for the shed hang in the kitchen cupboard.",
]
# The same door-code passage, once more in a copy of the handbook (whitespace differs) and 30
# times as boilerplate in a log: more copies than the first fetch (2k) looks at.
COPY = "To reset the door  code, hold the star key\nfor five seconds and enter the new code."
OTHER_DOOR = [
    "A door code that was reset shows a green light on the keypad for five seconds.",
    "Door codes are four to eight digits long; the star key cancels a half-typed code.",
    "The front door code is changed each spring by the caretaker.",
]
QUERY = "how do I reset the door code with the star key"


@pytest.fixture(scope="module")
def store(tmp_path_factory, embedder):
    s = SQLiteStore(tmp_path_factory.mktemp("duplicates") / "index.sqlite3")
    s.check_embedder(embedder.name, embedder.dim)
    docs = {
        "/kb/house/handbook.md": HANDBOOK,
        "/kb/backup/handbook-copy.md": [COPY],
        "/kb/logs/notices.txt": [HANDBOOK[0]] * 30,
        "/kb/house/doors.md": OTHER_DOOR,
    }
    batch = []
    for source, passages in docs.items():
        text, chunks = "", []
        for passage in passages:
            chunks.append(Chunk(text=passage, start=len(text), end=len(text) + len(passage)))
            text += passage + "\n\n"
        ext = source.rsplit(".", 1)[1]
        doc = Document(source, f"text/{ext}", text, f"h-{source}", {"file_type": ext})
        batch.append((doc, chunks, embedder.embed([c.text for c in chunks])))
    s.replace_documents(batch)
    yield s
    s.close()


@pytest.mark.parametrize("kind", ["bm25", "dense", "hybrid"])
def test_k_distinct_passages_despite_many_copies(store, embedder, kind):
    hits = make_retriever(kind, store, embedder).retrieve(QUERY, k=4)
    keys = [passage_key(h.chunk.text) for h in hits]
    assert len(hits) == 4, keys
    assert len(set(keys)) == 4
    door = hits[0]
    assert passage_key(door.chunk.text) == passage_key(HANDBOOK[0])
    # the best copy stands for the passage; copies it stood in for are listed, each once
    copies = {(c.source, c.id) for c in door.duplicates}
    assert len(copies) == len(door.duplicates)
    assert door.chunk.id not in {c.id for c in door.duplicates}
    sources = {c.source for c in door.duplicates}
    assert "/kb/logs/notices.txt" in sources
    assert all(passage_key(c.text) == passage_key(HANDBOOK[0]) for c in door.duplicates)
    # the other hits are the other door passages, not more copies
    assert {h.chunk.source for h in hits[1:]} <= {"/kb/house/doors.md", "/kb/house/handbook.md"}


def test_ties_between_copies_go_to_the_lowest_chunk_id(store, embedder):
    # identical texts have identical vectors: the same representative whatever k asks for
    dense = DenseRetriever(store, embedder)
    first = [dense.retrieve(QUERY, k=k)[0].chunk.id for k in (1, 3, 8)]
    assert len(set(first)) == 1
    bm25 = BM25Retriever(store)
    assert len({bm25.retrieve(QUERY, k=k)[0].chunk.id for k in (1, 3, 8)}) == 1


def test_fewer_than_k_when_the_index_has_fewer_distinct_passages(store, embedder):
    # 37 chunks but only 7 distinct passages
    for kind in ("bm25", "dense", "hybrid"):
        hits = make_retriever(kind, store, embedder).retrieve("door code key", k=20)
        assert len({passage_key(h.chunk.text) for h in hits}) == len(hits)
        assert len(hits) <= 7


def _hit(cid: int, text: str, score: float, source: str = "/s") -> ScoredChunk:
    return ScoredChunk(Chunk(text=text, start=0, end=len(text), id=cid, source=source), score)


class _Fixed:
    """A retriever that returns a fixed ranking (to pin the fusion arithmetic)."""

    def __init__(self, name: str, hits: list[ScoredChunk]):
        self.name, self.hits = name, hits

    def retrieve(self, query, k=5, filters=None):
        return [ScoredChunk(h.chunk, h.score, {self.name: h.score}) for h in self.hits[:k]]


def test_hybrid_gives_a_passage_both_votes_when_each_retriever_found_another_copy():
    keyword = _Fixed("bm25", [_hit(1, "alpha text", 9.0), _hit(7, "shared  passage", 8.0)])
    vector = _Fixed("dense", [_hit(9, "shared passage", 0.9, "/copy"), _hit(2, "beta", 0.5)])
    hits = HybridRetriever([keyword, vector], rrf_k=60).retrieve("q", k=3)
    shared = next(h for h in hits if h.chunk.id == 7)
    assert shared.score == pytest.approx(1 / 62 + 1 / 61)
    assert shared.scores["bm25"] == 8.0 and shared.scores["dense"] == 0.9
    assert [(c.id, c.source) for c in shared.duplicates] == [(9, "/copy")]
    assert hits[0] is shared  # two votes beat one first place
    assert len(hits) == 3


def test_collapse_keeps_rank_order_and_first_copy():
    hits = [_hit(3, "a b", 3.0), _hit(1, "c", 2.0), _hit(2, "a\n b ", 1.0)]
    kept = collapse_duplicates(hits)
    assert [h.chunk.id for h in kept] == [3, 1]
    assert [c.id for c in kept[0].duplicates] == [2]
    assert all(h.duplicates == [] for h in hits)  # the hits passed in are left alone


def test_json_lists_the_copies_with_their_sources_and_ids(store, embedder):
    (door,) = make_retriever("hybrid", store, embedder).retrieve(QUERY, k=1)
    plain, served = hit_to_json(door), hit_to_json(door, document_ids=True)
    assert "document_id" not in plain and served["document_id"] == door.chunk.document_id
    assert [c["chunk_id"] for c in plain["duplicates"]] == [c.id for c in door.duplicates]
    assert {c["source"] for c in served["duplicates"]} == {c.source for c in door.duplicates}
    assert all(c["document_id"] is not None for c in served["duplicates"])
    assert plain["text"] == door.chunk.text


def test_unique_top_asks_for_more_only_while_copies_crowd_out_k_passages():
    ranking = [_hit(i, "same text", 1.0) for i in range(200)] + [
        _hit(200 + i, f"passage {i}", 0.5) for i in range(3)
    ]
    asked: list[int] = []

    def search(n):
        asked.append(n)
        return ranking[:n]

    hits = unique_top(search, 3)
    assert asked == [6, 24, 96]  # three rounds, then it settles for what it has
    assert [h.chunk.text for h in hits] == ["same text"]
    assert len(hits[0].duplicates) == 95

    asked.clear()
    assert len(unique_top(lambda n: search(n) if n > 0 else [], 1)) == 1
    assert asked == [2]  # one fetch is enough when k distinct passages are in it

    asked.clear()
    few = ranking[198:]  # 2 copies + 3 passages: the index runs out before 2k
    hits = unique_top(lambda n: (asked.append(n), few[:n])[1], 4)
    assert asked == [8] and len(hits) == 4

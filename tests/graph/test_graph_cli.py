"""`hearth graph build | show | query` and `hearth ask --graph` as a person runs them (a
subprocess), with the real instruction model (Qwen2.5-Coder-0.5B) reading a three-document
corpus, and the real embedder."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from hearth.graph.build import build_graph
from hearth.graph.store import GraphStore, graph_path
from tests.graph.conftest import fed_triples
from tests.test_cli import run_hearth

QWEN = {"HEARTH_INSTRUCT_MODEL": "local:qwen2.5-coder-0.5b"}


@pytest.fixture(scope="module")
def built(indexed):
    docs, index, store = indexed
    result = run_hearth("graph", "build", "--json", index=index, cwd=docs, env=QWEN)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


def test_build_with_the_model_keeps_provenance(built, indexed):
    docs, index, store = indexed
    assert set(built) >= {"chunks", "triples", "entities", "dropped", "seconds", "db"}
    assert built["chunks"] == 3 and built["triples"] >= 2
    assert built["db"] == str(graph_path(index))
    with GraphStore(graph_path(index)) as graph:
        triples = graph.triples()
    assert len(triples) == built["triples"]
    for t in triples:  # every stored span is the quoted evidence, in the source document
        text = store.get_document(t["source"]).text
        assert text[t["start"] : t["end"]] == t["evidence"]
    subjects_objects = " ".join(f"{t['subject']} {t['object']}" for t in triples)
    assert "Vale" in subjects_objects or "Lovelace" in subjects_objects


def test_rebuild_reads_nothing_unchanged(built, indexed):
    docs, index, _ = indexed
    again = run_hearth("graph", "build", "--json", index=index, cwd=docs, env=QWEN)
    assert again.returncode == 0, again.stderr[-2000:]
    report = json.loads(again.stdout)
    assert report["extracted"] == 0 and report["triples"] == built["triples"]


def test_show_json_and_a_self_contained_picture(built, indexed, tmp_path):
    docs, index, _ = indexed
    out = tmp_path / "graph.html"
    shown = run_hearth("graph", "show", "--json", "--out", str(out), index=index, cwd=docs)
    assert shown.returncode == 0, shown.stderr[-2000:]
    triples = json.loads(shown.stdout)["triples"]
    assert len(triples) == built["triples"]
    keys = {"subject", "relation", "object", "source", "start", "end", "chunk_id"}
    assert all(set(t) == keys for t in triples)
    page = out.read_text(encoding="utf-8")
    assert "<svg" in page and not re.search(r"(src|href)=[\"']?https?:", page)
    table = run_hearth("graph", "show", "--limit", "1", index=index, cwd=docs)
    assert table.returncode == 0 and "subject" in table.stdout


def test_query_refuses_writes_and_answers_questions(built, indexed):
    docs, index, _ = indexed
    refused = run_hearth(
        "graph", "query", "--json", "--cypher", "MATCH (a:Entity) DETACH DELETE a",
        index=index, cwd=docs,
    )  # fmt: skip
    assert refused.returncode != 0
    assert "read-only" in json.loads(refused.stdout)["error"]
    with GraphStore(graph_path(index)) as graph:
        assert graph.counts()["triples"] == built["triples"]  # unchanged
    asked = run_hearth(
        "graph", "query", "--json", "Who designed the Harbour Library?",
        index=index, cwd=docs, env=QWEN,
    )  # fmt: skip
    assert asked.returncode == 0, asked.stdout + asked.stderr[-2000:]
    result = json.loads(asked.stdout)
    assert result["cypher"].startswith("MATCH (a:Entity)-[r:REL]-(b:Entity)")
    assert re.search(r"LIMIT \d+$", result["cypher"])
    assert isinstance(result["columns"], list) and isinstance(result["rows"], list)


def test_ask_graph_adds_the_passage_of_the_second_hop(indexed, embedder, built):
    docs, index, store = indexed
    # the chain the question needs, fed (the point here is retrieval, not the model)
    build_graph(store, graph_path(index), raw_triples=fed_triples, embedder=embedder)
    question = "Where was the architect of the Harbour Library born?"
    args = ("ask", "--json", "--extractive", "-k", "1", "--retriever", "bm25", question)
    plain = run_hearth(*args, index=index, cwd=docs)
    graph = run_hearth(*args, "--graph", "--hops", "2", index=index, cwd=docs)
    assert plain.returncode == 0 and graph.returncode == 0, graph.stderr[-2000:]
    plain, graph = json.loads(plain.stdout), json.loads(graph.stdout)
    assert "graph" not in plain.get("stages", {})
    assert all(Path(c["source"]).name == "harbour.md" for c in plain["citations"])
    added = graph["stages"]["graph"]["added"]
    assert [Path(a["source"]).name for a in added][0] == "vale.md"
    assert "vale.md" not in json.dumps(plain)  # plain retrieval never saw the second hop

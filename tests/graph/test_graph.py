"""The knowledge graph without a model: provenance checks, entity resolution, the LadybugDB store
and k hops, safe rebuilds, Cypher validation, the HTML picture and graph-augmented retrieval.
Triples are fed directly (the model's shape) where the point is not the model."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hearth.graph.build import build_graph
from hearth.graph.cypher import CypherRefused, run_validated, validate
from hearth.graph.draw import render_html
from hearth.graph.extract import check, locate
from hearth.graph.resolve import normalise, resolve
from hearth.graph.retrieve import GraphRetriever
from hearth.graph.store import GraphStore, graph_path
from hearth.types import Chunk
from tests.graph.conftest import fed_triples


@pytest.fixture(scope="module")
def built(indexed, embedder):
    docs, index, store = indexed
    report = build_graph(store, graph_path(index), raw_triples=fed_triples, embedder=embedder)
    return report, graph_path(index)


# ---- provenance ------------------------------------------------------------------------------


def test_locate_exact_spaced_and_fuzzy():
    text = "Ada Lovelace was an English mathematician.  She wrote notes\non the Engine."
    assert locate("Ada Lovelace was an English mathematician.", text) == (0, 42)
    s, e = locate("she wrote notes on the engine", text)
    assert text[s:e] == "She wrote notes\non the Engine"
    s, e = locate("Ada Lovelace was an English mathematican.", text)  # a typo
    assert text[s:e].startswith("Ada Lovelace was an English")
    assert locate("Ada Lovelace invented the telephone.", text) is None


def test_check_keeps_real_evidence_and_drops_made_up_quotes():
    doc = "Intro line.\nAda Lovelace was born in London. She died in 1852."
    chunk = Chunk(text=doc[12:], start=12, end=len(doc), id=7, source="/x/ada.md", document_id=1)
    found = check(
        [
            {"subject": "Ada Lovelace", "relation": "born in", "object": "London",
             "evidence": "Ada Lovelace was born in London."},
            {"subject": "Ada Lovelace", "relation": "invented", "object": "the telephone",
             "evidence": "Ada Lovelace invented the telephone in 1876."},
            {"subject": "Ada Lovelace", "relation": "founded", "object": "Radium Institute",
             "evidence": "Ada Lovelace was born in London."},  # a real quote, a made-up object
            {"subject": "# Ada Lovelace", "relation": "born in", "object": "London",
             "evidence": "Ada Lovelace was born in London."},  # the same fact again
        ],
        chunk,
    )  # fmt: skip
    assert found.dropped == 2
    (t,) = found.triples
    assert doc[t.start : t.end] == "Ada Lovelace was born in London." == t.evidence
    assert t.chunk_id == 7 and t.source == "/x/ada.md"


def test_stored_spans_are_source_slices_and_made_up_evidence_is_dropped(built, indexed):
    report, path = built
    _, _, store = indexed
    assert report.dropped == 1  # "invented the telephone" is in no document
    with GraphStore(path) as graph:
        triples = graph.triples()
    assert len(triples) == report.triples == 7
    for t in triples:
        text = store.get_document(t["source"]).text
        assert text[t["start"] : t["end"]] == t["evidence"]
        chunk = store.get_chunk(t["chunk_id"])
        assert chunk.start <= t["start"] < t["end"] <= chunk.end


# ---- entity resolution -------------------------------------------------------------------------


def test_normalise():
    assert normalise("Dr. Ada Lovelace's") == "ada lovelace"
    assert normalise("The Harbour Library") == "harbour library"


def test_lovelace_merges_into_ada_lovelace(embedder):
    found = resolve([(1, "Ada Lovelace"), (1, "Lovelace"), (2, "ada lovelace's")], embedder)
    assert len(found.entities) == 1
    (ada,) = found.entities
    assert ada.name == "Ada Lovelace"
    assert set(ada.aliases) == {"Lovelace", "ada lovelace's"}


def test_near_names_stay_apart(embedder):
    found = resolve(
        [(1, "John Smith"), (2, "Jane Smith"), (3, "Paris"), (3, "Paris Hilton"),
         (4, "London"), (4, "East London")],
        embedder,
    )  # fmt: skip
    names = sorted(e.name for e in found.entities)
    assert names == ["East London", "Jane Smith", "John Smith", "London", "Paris", "Paris Hilton"]


def test_surname_follows_its_own_document():
    found = resolve([(1, "John Smith"), (1, "Smith"), (2, "Jane Smith"), (2, "Smith")])
    assert found.mentions[(1, "Smith")] == found.mentions[(1, "John Smith")]
    assert found.mentions[(2, "Smith")] == found.mentions[(2, "Jane Smith")]
    assert found.mentions[(1, "John Smith")] != found.mentions[(2, "Jane Smith")]


def test_graph_resolves_across_documents(built):
    _, path = built
    with GraphStore(path) as graph:
        names = {e["name"]: e["aliases"] for e in graph.entities()}
    assert "Vale" in names["Ingrid Vale"]  # vale.md says "Vale"; one entity for both
    assert "Lovelace" in names["Ada Lovelace"]
    assert "Vale" not in names and "Lovelace" not in names


# ---- storage -----------------------------------------------------------------------------------


def test_k_hop_neighbourhood(built):
    _, path = built
    with GraphStore(path) as graph:
        (harbour,) = graph.find_entities(["the harbour library"])
        one = graph.neighbourhood([harbour["id"]], hops=1)
        two = graph.neighbourhood([harbour["id"]], hops=2)
    assert {t["object"] for t in one} == {"Oslo", "Ingrid Vale"}
    born = [t for t in two if t["relation"] == "born in"]
    assert born and born[0]["object"] == "Bergen" and born[0]["hop"] == 2
    assert Path(born[0]["source"]).name == "vale.md"


def test_failed_build_leaves_the_old_graph(built, indexed, embedder):
    _, path = built
    _, _, store = indexed
    with GraphStore(path) as graph:
        before = graph.triples()

    def broken(chunk):
        raise RuntimeError("model crashed")

    with pytest.raises(RuntimeError):
        build_graph(store, path, raw_triples=broken, embedder=embedder, model_name="other")
    with GraphStore(path) as graph:
        assert graph.triples() == before
    assert not Path(f"{path}.new").exists()


def test_rebuild_reads_only_changed_chunks(built, indexed, embedder):
    _, path = built
    _, _, store = indexed
    calls = []

    def counting(chunk):
        calls.append(chunk.id)
        return fed_triples(chunk)

    report = build_graph(store, path, raw_triples=counting, embedder=embedder, model_name="m")
    assert report.extracted == report.chunks == len(calls)  # new model name: all read again
    calls.clear()
    again = build_graph(store, path, raw_triples=counting, embedder=embedder, model_name="m")
    assert again.extracted == 0 and calls == [] and again.triples == report.triples


# ---- Cypher validation -------------------------------------------------------------------------

SCHEMA = {
    "Entity": {"id": "INT64", "name": "STRING", "aliases": "STRING[]"},
    "REL": {"relation": "STRING", "chunk_id": "INT64", "source": "STRING", "start": "INT64",
            "end": "INT64", "evidence": "STRING"},
}  # fmt: skip


@pytest.mark.parametrize(
    "query",
    [
        "CREATE (:Entity {id: 99, name: 'x'})",
        "MATCH (a:Entity) DETACH DELETE a",
        "MATCH (a:Entity) SET a.name = 'x' RETURN a",
        "MERGE (a:Entity {id: 1})",
        "MATCH (a:Entity) RETURN a.name; MATCH (b:Entity) DELETE b",
        "CALL show_tables() RETURN *",
        "COPY Entity FROM 'x.csv'",
        "MATCH (a:Person) RETURN a.name",
        "MATCH (a:Entity) RETURN a.password",
        "MATCH (a:Entity)-[r:KNOWS]->(b) RETURN b",
        "DROP TABLE Entity",
    ],
)
def test_validate_refuses(query):
    with pytest.raises(CypherRefused):
        validate(query, SCHEMA)


def test_validate_enforces_limit_and_allows_keywords_in_strings():
    assert validate("MATCH (a:Entity) RETURN a.name", SCHEMA).endswith("LIMIT 100")
    assert validate("MATCH (a:Entity) RETURN a.name LIMIT 5000", SCHEMA).endswith("LIMIT 100")
    q = "MATCH (a:Entity) WHERE a.name = 'CREATE; DELETE' RETURN a.name LIMIT 3;"
    assert validate(q, SCHEMA) == q[:-1]


def test_refused_write_leaves_the_graph_unchanged(built):
    _, path = built
    with GraphStore(path) as graph:
        before = graph.counts()
        with pytest.raises(CypherRefused):
            run_validated(graph, "MATCH (a:Entity) DETACH DELETE a")
        with pytest.raises(CypherRefused):  # the binder catches what the regexes let by
            run_validated(graph, "MATCH (a:Entity) RETURN b.name")
        result = run_validated(
            graph, "MATCH (a:Entity)-[r:REL]->(b:Entity) WHERE a.name = 'Ingrid Vale' "
            "RETURN r.relation, b.name ORDER BY b.name",
        )  # fmt: skip
        assert graph.counts() == before
    assert result.columns == ["r.relation", "b.name"]
    assert ["born in", "Bergen"] in result.rows


# ---- the picture -------------------------------------------------------------------------------


def test_html_is_self_contained(built):
    _, path = built
    with GraphStore(path) as graph:
        page = render_html(graph.triples())
    assert "<svg" in page and "Ingrid Vale" in page and "born in" in page
    assert not re.search(r"<(script|link|img)[^>]*(src|href)=", page)
    assert "@import" not in page and "fetch(" not in page


# ---- graph-augmented retrieval -----------------------------------------------------------------


def test_graph_retriever_adds_the_second_hop_from_another_document(built, indexed, embedder):
    from hearth.rag.retrievers import make_retriever

    _, path = built
    _, _, store = indexed
    base = make_retriever("bm25", store, embedder)
    question = "Where was the architect of the Harbour Library born?"
    plain = base.retrieve(question, k=1)
    assert [Path(h.chunk.source).name for h in plain] == ["harbour.md"]
    with GraphStore(path) as graph:
        found = GraphRetriever(base, graph, store, hops=2).run(question, k=1)
    names = [Path(h.chunk.source).name for h in found.hits]
    assert names[0] == "harbour.md" and "vale.md" in names
    report = found.generated["graph"]
    assert "Harbour Library" in report["entities"]
    assert any(t["object"] == "Bergen" for t in report["triples"])
    assert len(names) == len(set(h.chunk.id for h in found.hits))  # no passage twice


def test_graph_passages_are_held_to_the_search_filters(built, indexed, embedder):
    from hearth.rag.retrievers import make_retriever
    from hearth.types import Filters

    _, path = built
    _, _, store = indexed
    base = make_retriever("bm25", store, embedder)
    question = "Where was the architect of the Harbour Library born?"
    with GraphStore(path) as graph:
        retriever = GraphRetriever(base, graph, store, hops=2)
        only_harbour = retriever.run(question, k=1, filters=Filters(source_glob="harbour.md"))
        too_old = retriever.run(question, k=1, filters=Filters(date_to="2000-01-01"))
    assert [Path(h.chunk.source).name for h in only_harbour.hits] == ["harbour.md"]
    assert too_old.hits == []  # every file is dated today: the graph adds nothing older either
    assert too_old.generated["graph"]["entities"]  # the walk ran; its passages were filtered


@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="needs /usr/bin/chromium")
def test_html_picture_works_in_a_browser(built, tmp_path):
    from playwright.sync_api import sync_playwright

    _, path = built
    with GraphStore(path) as graph:
        triples = graph.triples()
    page_file = tmp_path / "graph.html"
    page_file.write_text(render_html(triples), encoding="utf-8")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--headless", "--no-sandbox"]
        )
        page = browser.new_page()
        errors, requests = [], []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(page_file.as_uri())
        nodes = page.locator("g.n")
        assert nodes.count() == len(
            {t["subject"] for t in triples} | {t["object"] for t in triples}
        )
        assert page.locator("g.e").count() == len(triples)
        vale = page.locator("g.n", has_text="Ingrid Vale")
        page.set_default_timeout(10_000)
        vale.locator("circle").hover()
        assert "triple" in page.locator("#tip").inner_text()
        page.locator("g.e", has_text="born in").first.locator("text").hover()
        assert "vale.md" in page.locator("#tip").inner_text()  # provenance on hover
        vale.locator("circle").click()
        assert page.locator("g.n.dim").count() > 0  # the rest fades; neighbours stay
        assert page.locator("g.n.hi", has_text="Ingrid Vale").count() == 1
        before = page.locator("#view").get_attribute("transform")
        page.mouse.move(300, 300)
        page.mouse.wheel(0, -200)
        page.wait_for_timeout(100)
        assert page.locator("#view").get_attribute("transform") != before  # zoomed
        browser.close()
    assert errors == []
    assert requests == [page_file.as_uri()]  # nothing fetched

"""Self-query: requests split into filters and a query (patterns and the instruction model),
document dates read at ingest, date filters in both stores, and `hearth search --self-query`."""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from hearth.index.store import SQLiteStore
from hearth.ingest.dates import front_matter_date, iso_date
from hearth.ingest.loaders import load_document
from hearth.query.self_query import IndexFacts, rules, self_query
from hearth.types import Document, Filters
from tests.test_cli import run_hearth

TODAY = date(2026, 12, 7)
FACTS = IndexFacts(("csv", "md", "pdf", "txt"), ("manuals", "notes"), "2020-01-01", "2025-06-01")


@pytest.mark.parametrize(
    ("request_text", "query", "filters"),
    [
        ("PDFs about pumps from 2024", "pumps",
         {"file_types": ["pdf"], "date_from": "2024-01-01", "date_to": "2024-12-31"}),
        ("markdown notes on billing since March 2023", "billing",
         {"file_types": ["md"], "date_from": "2023-03-01"}),
        ("documents about the boiler before 2022", "boiler", {"date_to": "2021-12-31"}),
        ("spreadsheets of sales between 2021 and 2023", "sales",
         {"file_types": ["csv"], "date_from": "2021-01-01", "date_to": "2023-12-31"}),
        ("reports from 2019-2021 about safety", "safety",
         {"date_from": "2019-01-01", "date_to": "2021-12-31"}),
        ("pdf files in the manuals folder about valves", "valves",
         {"source_glob": "manuals", "file_types": ["pdf"]}),
        ("what changed last year", "what changed",
         {"date_from": "2025-01-01", "date_to": "2025-12-31"}),
        ("notes after 2024-03-15", "notes", {"date_from": "2024-03-16"}),
        ("pump manuals from February 2024", "pump manuals",
         {"date_from": "2024-02-01", "date_to": "2024-02-29"}),
        # no filter asked for: the request is searched as it is
        ("how do I kill a stuck process", "how do I kill a stuck process", {}),
        ("the 2024 budget", "2024 budget", {}),
        ("what may the pump do in march", "what may the pump do in march", {}),
    ],
)  # fmt: skip
def test_rules_split_requests(request_text, query, filters):
    found = rules(request_text, FACTS, today=TODAY)
    assert (found.query, found.filters.as_dict(), found.by) == (query, filters, "rules")


def test_rules_drop_a_type_the_index_does_not_hold():
    found = rules("html pages about login", FACTS, today=TODAY)
    assert found.filters.is_empty() and found.query == "login"
    assert "no html documents" in found.notes[0]


def test_index_facts_from_documents():
    facts = IndexFacts.of(
        [
            {"source": "/d/manuals/a.pdf", "file_type": "pdf", "date": "2024-06-01"},
            {"source": "/d/notes/b.md", "file_type": "md", "date": "2021-01-02"},
            {"source": "/d/notes/old/c.txt", "file_type": "txt", "date": None},
        ]
    )
    assert facts.file_types == ("md", "pdf", "txt")
    assert facts.folders == ("manuals", "notes", "old")
    assert (facts.oldest, facts.newest, facts.undated) == ("2021-01-02", "2024-06-01", 1)


@pytest.fixture(scope="module")
def qwen():
    from hearth import llm

    return llm.load("local:qwen2.5-coder-0.5b")


def test_model_reads_a_request_and_the_rules_keep_it_grounded(qwen):
    found = self_query("PDFs about pumps from 2024", FACTS, qwen, today=TODAY)
    assert found.by == "model"
    assert found.filters.file_types == ("pdf",)
    assert (found.filters.date_from, found.filters.date_to) == ("2024-01-01", "2024-12-31")
    assert "pump" in found.query.lower() and "2024" not in found.query
    # nothing in this request names a type, a time or a folder: whatever the model says, no
    # filter narrows the search
    plain = self_query("how do I reset the boiler pressure valve", FACTS, qwen, today=TODAY)
    assert plain.filters.is_empty(), plain.to_json()


# ---- dates at ingest, date filters in the stores -------------------------------------------


def test_iso_date_forms():
    assert iso_date("D:20240301120000Z") == "2024-03-01"
    assert iso_date("2024-03-01T10:00:00+02:00") == "2024-03-01"
    assert iso_date("2024-02") == "2024-02-01" and iso_date("2019") == "2019-01-01"
    assert iso_date(datetime(2024, 1, 2, 23, 30, tzinfo=UTC)) == "2024-01-02"
    assert iso_date("2024-13-45") is None and iso_date("soon") is None and iso_date(None) is None
    assert front_matter_date("---\ntitle: x\ndate: '2023-05-02'\n---\n# T\n") == "2023-05-02"
    assert front_matter_date("# T\ndate: 2023-05-02\n") is None  # not front matter


def test_loaders_record_the_document_date(tmp_path):
    from fpdf import FPDF

    md = tmp_path / "a.md"
    md.write_text("---\ndate: 2023-05-02\n---\n# Pumps\nText.\n", encoding="utf-8")
    html = tmp_path / "b.html"
    html.write_text(
        '<html><head><meta property="article:published_time" content="2022-11-30T08:00:00Z">'
        "</head><body><p>Valves.</p></body></html>",
        encoding="utf-8",
    )
    pdf = FPDF()
    pdf.set_creation_date(datetime(2021, 4, 5, tzinfo=UTC))
    pdf.add_page()
    pdf.set_font("helvetica", size=12)
    pdf.cell(0, 10, "Boilers.")
    pdf.output(str(tmp_path / "c.pdf"))
    txt = tmp_path / "d.txt"
    txt.write_text("Plain.", encoding="utf-8")
    stamp = datetime(2020, 7, 8, 12, tzinfo=UTC).timestamp()
    os.utime(txt, (stamp, stamp))
    got = {p.suffix: load_document(p).metadata for p in sorted(tmp_path.iterdir())}
    assert (got[".md"]["date"], got[".md"]["date_from"]) == ("2023-05-02", "front matter")
    assert (got[".html"]["date"], got[".html"]["date_from"]) == ("2022-11-30", "meta")
    assert (got[".pdf"]["date"], got[".pdf"]["date_from"]) == ("2021-04-05", "pdf")
    assert (got[".txt"]["date"], got[".txt"]["date_from"]) == ("2020-07-08", "modified")


DATED = {
    "/d/manuals/pump2024.pdf": ("pdf", "2024-06-01", "The booster pump runs at 2900 rpm."),
    "/d/manuals/pump2022.pdf": ("pdf", "2022-03-01", "The old pump needed grease monthly."),
    "/d/notes/pump.md": ("md", "2024-02-10", "Pump P-101 seal leaked twice."),
    "/d/notes/undated.md": ("md", None, "A pump note without any date."),
}


def _dated_batch(embedder):
    from hearth.types import Chunk

    batch = []
    for source, (file_type, day, text) in DATED.items():
        meta = {"file_type": file_type, **({"date": day} if day else {})}
        doc = Document(source, f"text/{file_type}", text, f"h-{source}", meta)
        chunk = Chunk(text=text, start=0, end=len(text))
        batch.append((doc, [chunk], embedder.embed([text])))
    return batch


def _sources(store, embedder, filters):
    dense = store.search_dense(embedder.embed(["pump"])[0], k=10, filters=filters)
    keyword = store.search_bm25("pump", k=10, filters=filters)
    assert {h.chunk.source for h in dense} == {h.chunk.source for h in keyword}
    return sorted(h.chunk.source for h in dense)


def _check_date_filters(store, embedder):
    in_2024 = Filters(date_from="2024-01-01", date_to="2024-12-31")
    assert _sources(store, embedder, in_2024) == ["/d/manuals/pump2024.pdf", "/d/notes/pump.md"]
    pdf_2024 = Filters(file_types=("pdf",), date_from="2024-01-01")
    assert _sources(store, embedder, pdf_2024) == ["/d/manuals/pump2024.pdf"]
    assert _sources(store, embedder, Filters(date_to="2022-03-01")) == ["/d/manuals/pump2022.pdf"]
    assert len(_sources(store, embedder, None)) == 4  # the undated one only without dates
    ids = {d["source"]: d["id"] for d in store.list_documents()}
    assert store.filtered_document_ids(in_2024) == {
        ids["/d/manuals/pump2024.pdf"],
        ids["/d/notes/pump.md"],
    }
    assert {d["source"]: d["date"] for d in store.list_documents()} == {
        s: day for s, (_, day, _) in DATED.items()
    }


def test_date_filters_in_the_sqlite_store(tmp_path, embedder):
    with SQLiteStore(tmp_path / "index.sqlite3") as store:
        store.check_embedder(embedder.name, embedder.dim)
        store.replace_documents(_dated_batch(embedder))
        _check_date_filters(store, embedder)


def test_date_filters_in_the_postgres_store(pg_url, embedder):
    from hearth.index.pg_store import PostgresStore

    with PostgresStore(pg_url) as store:
        store.check_embedder(embedder.name, embedder.dim)
        store.replace_documents(_dated_batch(embedder))
        _check_date_filters(store, embedder)


# ---- the command ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dated_index(tmp_path_factory) -> tuple[Path, Path]:
    from fpdf import FPDF

    root = tmp_path_factory.mktemp("selfquery")
    (root / "docs" / "manuals").mkdir(parents=True)
    (root / "docs" / "notes").mkdir()
    for name, year, text in (
        ("pump2024.pdf", 2024, "Pump manual. The booster pump runs at 2900 rpm."),
        ("pump2022.pdf", 2022, "Pump manual. The old pump needed grease monthly."),
    ):
        pdf = FPDF()
        pdf.set_creation_date(datetime(year, 6, 1, tzinfo=UTC))
        pdf.add_page()
        pdf.set_font("helvetica", size=12)
        pdf.multi_cell(0, 10, text)
        pdf.output(str(root / "docs" / "manuals" / name))
    (root / "docs" / "notes" / "pump.md").write_text(
        "---\ndate: 2024-02-10\n---\n# Pump log\nPump P-101 seal leaked twice.\n", "utf-8"
    )
    index = root / "idx"
    done = run_hearth("ingest", "docs", "--json", index=index, cwd=root)
    assert done.returncode == 0, done.stderr
    return root, index


def test_search_self_query_shows_filters_and_query(dated_index):
    root, index = dated_index
    out = run_hearth(
        "search", "--self-query", "--model", "none", "PDFs about pumps from 2024", "--json",
        index=index, cwd=root,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["self_query"] == {
        "query": "pumps",
        "filters": {"file_types": ["pdf"], "date_from": "2024-01-01", "date_to": "2024-12-31"},
        "by": "rules",
        "notes": [],
    }
    assert [Path(h["source"]).name for h in got["hits"]] == ["pump2024.pdf"]
    # an option given beside --self-query wins over what it reads
    out = run_hearth(
        "search", "--self-query", "--model", "none", "PDFs about pumps from 2024",
        "--date-from", "2022-01-01", "--json", index=index, cwd=root,
    )  # fmt: skip
    got = json.loads(out.stdout)
    assert got["self_query"]["filters"]["date_from"] == "2022-01-01"
    assert sorted(Path(h["source"]).name for h in got["hits"]) == ["pump2022.pdf", "pump2024.pdf"]


def test_search_date_options_and_a_bad_date(dated_index):
    root, index = dated_index
    out = run_hearth("search", "pump", "--date-to", "2023-12-31", "--json", index=index, cwd=root)
    assert [Path(h["source"]).name for h in json.loads(out.stdout)["hits"]] == ["pump2022.pdf"]
    bad = run_hearth("search", "pump", "--date-from", "June", "--json", index=index, cwd=root)
    assert bad.returncode != 0
    assert "not a date" in (bad.stdout + bad.stderr)


@pytest.mark.skipif(sys.platform == "win32", reason="paths in the expected output are POSIX")
def test_search_self_query_human_output(dated_index):
    root, index = dated_index
    out = run_hearth(
        "search", "--self-query", "--model", "none", "notes about pumps in the notes folder",
        index=index, cwd=root,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "self-query (rules): query 'pumps'" in out.stdout
    assert "pump.md" in out.stdout and "pump2024.pdf" not in out.stdout

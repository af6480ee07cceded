"""The splitter with the real embedder tokenizer: exact spans, budgets, structure, overlap."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from fpdf import FPDF
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hearth.ingest import Splitter, load_document
from hearth.ingest.structure import find_sections
from hearth.types import Document
from tests.ingest.conftest import assert_chunk_invariants

WORDS = (
    "the boiler door code kitchen fuse box garden tap water heater thermostat window lock "
    "attic cellar key spare battery alarm smoke detector radiator valve pressure manual"
).split()


def prose(seed: int, sentences: int) -> str:
    rng = random.Random(seed)
    out = []
    for _ in range(sentences):
        words = [rng.choice(WORDS) for _ in range(rng.randint(4, 14))]
        out.append(" ".join(words).capitalize() + rng.choice([".", ".", "?", "!"]))
    return " ".join(out)


def md_doc(text: str, file_type: str = "md", **metadata) -> Document:
    return Document("/tmp/x." + file_type, "text/markdown", text, "0", {"file_type": file_type,
                                                                         **metadata})  # fmt: skip


# -- structure ---------------------------------------------------------------------------------


def test_heading_paths_and_heading_only_parents_join_their_child(count):
    text = (
        "Preamble line.\n\n# Setup\n\n## Door code\n\nThe code is 4512.\n\n"
        "## Boiler\n\nPress reset.\n\n# Other\n\n```\n# not a heading\n```\n\n"
        "Setext title\n------------\n\nUnder setext."
    )
    doc = md_doc(text)
    chunks = Splitter(count, 64, 8).split(doc)
    assert_chunk_invariants(doc, chunks, count, 64)
    by_text = {c.text: c.headings for c in chunks}
    assert by_text["Preamble line."] == []
    assert by_text["# Setup\n\n## Door code\n\nThe code is 4512."] == ["Setup", "Door code"]
    assert by_text["## Boiler\n\nPress reset."] == ["Setup", "Boiler"]
    assert by_text["# Other\n\n```\n# not a heading\n```"] == ["Other"]
    assert by_text["Setext title\n------------\n\nUnder setext."] == ["Other", "Setext title"]


def test_plain_text_hash_lines_are_not_headings(count):
    doc = md_doc("# not a heading in a .txt\n\nbody", file_type="txt")
    (chunk,) = Splitter(count, 64, 8).split(doc)
    assert chunk.headings == []


def test_front_matter_is_not_a_setext_heading():
    text = "---\ntitle: x\n---\n\n# Real\n\nbody"
    sections = find_sections(text)
    assert [s.headings for s in sections] == [(), ("Real",)]


# -- budget, overlap, boundaries ---------------------------------------------------------------


@pytest.mark.parametrize(("budget", "overlap"), [(32, 8), (64, 16), (200, 32), (128, 0)])
def test_long_section_respects_budget_and_overlaps(count, budget, overlap):
    text = "# Manual\n\n" + "\n\n".join(prose(seed, 6) for seed in range(12))
    doc = md_doc(text)
    chunks = Splitter(count, budget, overlap).split(doc)
    assert len(chunks) > 3
    assert_chunk_invariants(doc, chunks, count, budget)
    assert all(c.headings == ["Manual"] for c in chunks)
    for prev, nxt in zip(chunks, chunks[1:], strict=False):
        shared = prev.end - nxt.start
        if overlap:
            assert shared > 0, "consecutive chunks of one section must overlap"
            assert count(text[nxt.start : prev.end]) <= overlap
        else:
            assert shared <= 0


def test_chunks_fill_the_budget_and_prefer_paragraph_ends(count):
    paragraphs = [prose(seed, 3) for seed in range(30)]
    text = "\n\n".join(paragraphs)
    doc = md_doc(text)
    chunks = Splitter(count, 100, 0).split(doc)
    assert_chunk_invariants(doc, chunks, count, 100)
    ends_at_paragraph = [text[c.end : c.end + 2] in ("\n\n", "") for c in chunks]
    assert sum(ends_at_paragraph) >= 0.8 * len(chunks)
    tokens = [count(c.text) for c in chunks[:-1]]
    assert sum(tokens) / len(tokens) >= 50  # at least half full on average


def test_no_overlap_across_sections(count):
    text = "# A\n\n" + prose(1, 20) + "\n\n# B\n\n" + prose(2, 20)
    doc = md_doc(text)
    chunks = Splitter(count, 48, 16).split(doc)
    b_start = text.index("# B")
    assert all(c.end <= b_start or c.start >= b_start for c in chunks)
    assert_chunk_invariants(doc, chunks, count, 48)


def test_unbreakable_runs_are_hard_cut(count):
    run_unk = "x" * 5000  # one [UNK] token to WordPiece: cut by the character cap
    run_many = "ab-" * 900  # hundreds of tokens with no whitespace: cut by the budget
    text = f"Start. {run_unk} middle {run_many} end."
    doc = md_doc(text, file_type="txt")
    splitter = Splitter(count, 40, 8)
    chunks = splitter.split(doc)
    assert_chunk_invariants(doc, chunks, count, 40)
    assert all(len(c.text) <= splitter.max_chars for c in chunks)
    assert any(set(c.text) == {"a", "b", "-"} for c in chunks)


def test_large_document_stays_within_budget(count):
    """Enough chunks for the splitter to stop re-counting whitespace-joined chunks."""
    text = "\n\n".join(f"## Part {i}\n\n" + prose(i, 25) for i in range(40))
    doc = md_doc(text)
    chunks = Splitter(count, 60, 12).split(doc)
    assert len(chunks) > 200
    assert_chunk_invariants(doc, chunks, count, 60)


def test_cjk_text_without_spaces(count):
    text = "日本語のテキストです。これはテストです。" * 60
    doc = md_doc(text, file_type="txt")
    chunks = Splitter(count, 50, 10).split(doc)
    assert len(chunks) > 2
    assert_chunk_invariants(doc, chunks, count, 50)


def test_empty_and_blank_documents_have_no_chunks(count):
    assert Splitter(count).split(md_doc("")) == []
    assert Splitter(count).split(md_doc(" \n\n\t ")) == []


def test_invalid_settings_are_refused(count):
    with pytest.raises(ValueError, match="overlap_tokens"):
        Splitter(count, 50, 50)
    with pytest.raises(ValueError, match="chunk_tokens"):
        Splitter(count, 4, 0)


# -- every loader's output ---------------------------------------------------------------------


def test_pdf_chunks_carry_their_page_and_never_span_two(tmp_path, count):
    pdf = FPDF()
    pdf.set_font("helvetica", size=11)
    for page in range(4):
        pdf.add_page()
        pdf.multi_cell(0, 6, prose(100 + page, 12 if page != 2 else 2))
    path = tmp_path / "manual.pdf"
    pdf.output(str(path))
    doc = load_document(path)
    chunks = Splitter(count, 64, 16).split(doc)
    assert_chunk_invariants(doc, chunks, count, 64)
    pages = doc.metadata["pages"]
    for chunk in chunks:
        (page,) = [p for s, e, p in pages if s <= chunk.start and chunk.end <= e]
        assert chunk.page == page
    assert {c.page for c in chunks} == {1, 2, 3, 4}


def test_json_chunks_carry_json_paths(tmp_path, count):
    records = [{"id": i, "room": WORDS[i % len(WORDS)], "notes": prose(i, 2)} for i in range(40)]
    path = tmp_path / "rooms.json"
    path.write_text(json.dumps(records))
    doc = load_document(path)
    chunks = Splitter(count, 48, 8).split(doc)
    assert_chunk_invariants(doc, chunks, count, 48)
    spans = doc.metadata["json_paths"]
    for chunk in chunks:
        inside = [p for s, e, p in spans if s < chunk.end and e > chunk.start]
        assert chunk.metadata["json_path"] == inside[0]
        assert chunk.metadata.get("json_paths", inside) == inside
    assert any(len(c.metadata.get("json_paths", [])) > 1 for c in chunks)


def test_csv_chunks_carry_rows(tmp_path, count):
    lines = ["room,floor,notes"] + [f"{WORDS[i]},{i % 3},{prose(i, 1)}" for i in range(25)]
    path = tmp_path / "rooms.csv"
    path.write_text("\n".join(lines))
    doc = load_document(path)
    chunks = Splitter(count, 64, 8).split(doc)
    assert_chunk_invariants(doc, chunks, count, 64)
    for chunk in chunks:
        inside = [n for s, e, n in doc.metadata["rows"] if s < chunk.end and e > chunk.start]
        assert chunk.metadata["rows"] == inside and chunk.metadata["row"] == inside[0]
    assert chunks[0].metadata["row"] == 2  # the header is row 1


@pytest.mark.parametrize("name", ["page.html", "notes.txt", "guide.md", "log.jsonl"])
def test_exact_spans_on_other_loaders(tmp_path, count, name):
    body = "\n\n".join(prose(seed, 4) for seed in range(8))
    content = {
        "page.html": "<html><body><main><h1>Guide</h1>"
        + "".join(f"<h2>Part {i}</h2><p>{prose(i, 5)}</p>" for i in range(6))
        + "</main></body></html>",
        "notes.txt": body.encode("cp1252"),
        "guide.md": "# Guide\n\n" + body,
        "log.jsonl": "\n".join(json.dumps({"msg": prose(i, 2), "n": i}) for i in range(30)),
    }[name]
    path: Path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    doc = load_document(path)
    chunks = Splitter(count, 48, 12).split(doc)
    assert len(chunks) > 3
    assert_chunk_invariants(doc, chunks, count, 48)
    if name == "page.html":
        assert {tuple(c.headings) for c in chunks} >= {("Guide", "Part 0"), ("Guide", "Part 5")}


# -- property: any markdown-ish text -----------------------------------------------------------

_piece = st.one_of(
    st.sampled_from(WORDS),
    st.sampled_from(["\n", "\n\n", "\n\n\n", " ", "  ", "\t", ". ", "! ", "? ", "。"]),
    st.sampled_from(["# ", "## ", "### ", "\n# Title\n", "\n## Sub\n", "```\n", "---\n"]),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12),
    st.integers(1, 400).map(lambda n: "z" * n),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pieces=st.lists(_piece, max_size=120),
    budget=st.integers(8, 80),
    overlap_share=st.floats(0, 0.9),
    file_type=st.sampled_from(["md", "txt", "html"]),
)
def test_property_spans_exact_and_budgets_hold(count, pieces, budget, overlap_share, file_type):
    text = " ".join(pieces) if len(pieces) % 2 else "".join(pieces)
    doc = md_doc(text, file_type=file_type)
    chunks = Splitter(count, budget, int(budget * overlap_share)).split(doc)
    assert_chunk_invariants(doc, chunks, count, budget)


def test_control_character_gaps_are_always_recounted(count):
    """Python calls \\x1c whitespace but BERT deletes it, gluing the words around it: chunks
    joined there must be recounted even after the splitter trusts its estimates."""
    rng = random.Random(7)
    plain = " ".join(rng.choice(WORDS) for _ in range(600))  # long enough to earn trust
    glued = "".join(rng.choice(WORDS) + rng.choice([" ", " ", " ", "\x1c"]) for _ in range(3000))
    doc = md_doc(plain + " " + glued.strip(), file_type="txt")
    chunks = Splitter(count, 16, 4).split(doc)
    assert_chunk_invariants(doc, chunks, count, 16)

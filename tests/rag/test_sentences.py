"""Sentence spans: exact offsets, markdown blocks, abbreviations, citation markers."""

from __future__ import annotations

from hearth.rag.sentences import Span, is_heading, split_sentences

TEXT = """# Install

Run pip install hearth. It needs Python 3.11, e.g. on Linux. Dr. Smith wrote it [1]. Reboot [2].
- first item
- second item with 3.5 GB

Answer here. [1] And more [2][3]. Done!"""


def pieces(text: str) -> list[str]:
    return [text[s.start : s.end] for s in split_sentences(text)]


def test_sentences_blocks_abbreviations_and_markers():
    assert pieces(TEXT) == [
        "# Install",
        "Run pip install hearth.",
        "It needs Python 3.11, e.g. on Linux.",
        "Dr. Smith wrote it [1].",
        "Reboot [2].",
        "- first item",
        "- second item with 3.5 GB",
        "Answer here. [1]",
        "And more [2][3].",
        "Done!",
    ]


def test_spans_are_offsets_into_the_text():
    spans = split_sentences(TEXT)
    assert all(isinstance(s, Span) and s.start < s.end for s in spans)
    assert [s.start for s in spans] == sorted(s.start for s in spans)
    assert is_heading(TEXT, spans[0]) and not is_heading(TEXT, spans[1])


def test_long_line_records_are_cut_at_newlines():
    rows = "\n".join(f"name: item {i}, price: {i} euros, colour: blue" for i in range(20))
    parts = pieces(rows)
    assert len(parts) == 20
    assert parts[3] == "name: item 3, price: 3 euros, colour: blue"


def test_empty_and_blank_text():
    assert split_sentences("") == []
    assert split_sentences("  \n\n ") == []

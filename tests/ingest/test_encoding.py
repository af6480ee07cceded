"""Text decoding: BOMs, UTF-8, and Western single-byte files that must never crash."""

from __future__ import annotations

import codecs

import pytest

from hearth.ingest.encoding import decode_bytes, detect_encoding

WESTERN = "Café crème, naïve façade, São Paulo. Größe über Straße."


@pytest.mark.parametrize("encoding", ["latin-1", "cp1252"])
def test_western_single_byte_text_decodes_exactly(encoding):
    assert decode_bytes(WESTERN.encode(encoding), "x.txt") == WESTERN


def test_cp1252_punctuation_is_not_read_as_latin1_control_codes():
    text = "He said “hello” – and left… for €5."
    assert decode_bytes(text.encode("cp1252")) == text


def test_a_single_accented_byte_is_cp1252_not_a_rare_code_page():
    assert decode_bytes("é".encode("latin-1")) == "é"


def test_every_latin1_byte_decodes_without_crashing():
    data = bytes(range(0x20, 0x100)) + b" plain words follow " * 3
    text = decode_bytes(data, "all.txt")
    assert "plain words follow" in text
    assert len(text) == len(data)


@pytest.mark.parametrize(
    ("encoding", "bom"),
    [("utf-8-sig", codecs.BOM_UTF8), ("utf-16-le", codecs.BOM_UTF16_LE),
     ("utf-16-be", codecs.BOM_UTF16_BE), ("utf-32-le", codecs.BOM_UTF32_LE)],
)  # fmt: skip
def test_byte_order_marks_pick_the_encoding_and_are_dropped(encoding, bom):
    text = "Hello wörld\nsecond line ✓"
    data = text.encode(encoding)
    if not data.startswith(bom):
        data = bom + data
    assert decode_bytes(data) == text
    assert detect_encoding(data)[1] == len(bom)


def test_utf16_without_bom_is_recognised():
    text = "plain ASCII text saved as UTF-16"
    assert decode_bytes(text.encode("utf-16-le")) == text
    assert decode_bytes(text.encode("utf-16-be")) == text


def test_non_western_single_byte_text_keeps_its_own_encoding():
    text = "Привет, как дела? Это простой русский текст о погоде и о жизни."
    assert decode_bytes(text.encode("cp1251")) == text


def test_utf8_wins_when_the_bytes_are_valid_utf8():
    text = "naïve 日本語 ✓"
    assert detect_encoding(text.encode("utf-8")) == ("utf-8", 0)
    assert decode_bytes(text.encode("utf-8")) == text

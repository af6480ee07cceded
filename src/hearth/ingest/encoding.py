"""Turn raw file bytes into text: BOMs, UTF-8, then charset-normalizer's best guess.

Hand-written around charset-normalizer because a guess alone is not enough: BOMs and plain
UTF-8 are settled exactly first, and Western single-byte text must never fail to decode.
"""

from __future__ import annotations

import codecs
from pathlib import Path

from hearth.errors import LoadError

_BOMS: tuple[tuple[bytes, str], ...] = (
    # utf-32 first: its little-endian BOM starts with the utf-16 one.
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_TIE_CHAOS = 10.0  # percentage points of charset-normalizer's "chaos" (mess) score
_TIE_COHERENCE = 5.0  # and of its language coherence score
_LATIN_FAMILY = {"latin_1", "iso8859_1", "iso8859_15", "cp1252", "ascii"}


def bom_encoding(data: bytes) -> tuple[str, int] | None:
    """The encoding a byte-order mark announces, and the BOM's length; None without one."""
    for bom, name in _BOMS:
        if data.startswith(bom):
            return name, len(bom)
    return None


def bomless_utf16(sample: bytes) -> str | None:
    """Spot UTF-16 without a BOM: mostly-ASCII text leaves a NUL in every other byte."""
    if len(sample) < 4:
        return None
    even = sample[0::2].count(0)
    odd = sample[1::2].count(0)
    half = len(sample) // 2
    if odd >= 0.9 * half and even == 0:
        return "utf-16-le"
    if even >= 0.9 * half and odd == 0:
        return "utf-16-be"
    return None


def detect_encoding(data: bytes) -> tuple[str, int]:
    """Name the encoding of `data` and how many leading bytes (a BOM) to skip."""
    found = bom_encoding(data)
    if found:
        return found
    utf16 = bomless_utf16(data[:8192])
    if utf16:
        return utf16, 0
    try:
        data.decode("utf-8")
        return "utf-8", 0
    except UnicodeDecodeError:
        pass
    return _guess_single_byte(data), 0


def _guess_single_byte(data: bytes) -> str:
    """charset-normalizer's guess, except that cp1252 wins every tie.

    On short Western text the detector cannot tell cp1252 from cp1250, cp437 or even
    EBCDIC (all score alike, and curly quotes can score worse than DOS box letters);
    cp1252 is by far the most common of them, so a candidate scoring nearly as well as the
    best one that is Western, or decodes to the same text as cp1252, makes it cp1252.
    Cyrillic, Greek, Polish... text still gets its own encoding: there cp1252 is not a
    candidate at all, or reads differently; among such ties Windows code pages win too.
    """
    from charset_normalizer import from_bytes

    cp1252 = _decoded(data, "cp1252")
    results = from_bytes(data)
    best = results.best()
    if best is None:
        return "cp1252" if cp1252 is not None else "latin-1"
    tied = [
        match
        for match in results
        if match.percent_chaos <= best.percent_chaos + _TIE_CHAOS
        and match.percent_coherence >= best.percent_coherence - _TIE_COHERENCE
    ]
    if cp1252 is not None and any(
        match.encoding in _LATIN_FAMILY or str(match) == cp1252 for match in tied
    ):
        return "cp1252"
    windows = [match.encoding for match in tied if match.encoding.startswith("cp125")]
    if windows:  # Windows code pages are far more common than their Mac and DOS twins
        return windows[0]
    if best.encoding in _LATIN_FAMILY:
        # latin-1 and cp1252 differ only in 0x80-0x9f, where latin-1 has control codes
        # nobody writes; latin-1 still decodes the five bytes cp1252 leaves undefined.
        return "cp1252" if cp1252 is not None else "latin-1"
    return best.encoding


def decode_bytes(data: bytes, path: Path | str = "<bytes>") -> str:
    """Decode a text file's bytes; raises LoadError (naming `path`) only if nothing fits."""
    return decode_with_encoding(data, path)[0]


def decode_with_encoding(data: bytes, path: Path | str = "<bytes>") -> tuple[str, str]:
    """Like decode_bytes, also naming the encoding used."""
    encoding, skip = detect_encoding(data)
    body = data[skip:]
    try:
        return body.decode(encoding), encoding
    except UnicodeDecodeError as exc:
        # A few bad bytes (a truncated last character) are replaced; mostly-bad text is refused.
        text = body.decode(encoding, errors="replace")
        if text.count("\ufffd") <= max(1, len(text) // 100):
            return text, encoding
        raise LoadError(
            f"{path}: cannot decode the text as {encoding} ({exc.reason} at byte {exc.start}); "
            "save it as UTF-8"
        ) from exc


def _decoded(data: bytes, encoding: str) -> str | None:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError:
        return None

"""Ingest: find files, load them into Documents, split Documents into Chunks.

discover() -> load_document() -> Splitter.split(); the indexer drives them in that order.
"""

from hearth.ingest.discover import Discovery, discover
from hearth.ingest.encoding import decode_bytes
from hearth.ingest.loaders import LOADERS, hash_file, is_supported, load_document
from hearth.ingest.splitter import Splitter

__all__ = [
    "LOADERS",
    "Discovery",
    "Splitter",
    "decode_bytes",
    "discover",
    "hash_file",
    "is_supported",
    "load_document",
]

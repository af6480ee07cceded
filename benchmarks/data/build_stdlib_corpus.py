"""Build the retrieval/ingest benchmark corpus: Python stdlib module docs rendered as plain text.

Real text the project did not write, available offline on any machine with Python: one .txt per
module from `pydoc.render_doc(module, renderer=pydoc.plaintext)`, deterministic for a given Python.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import platform
import pydoc
import re
import sys
from pathlib import Path

# The modules the labeled questions in retrieval_questions.jsonl are about, plus neighbours that
# compete for the same words (os vs shutil vs pathlib, json vs pickle, ...).
RETRIEVAL_MODULES = [
    "argparse", "base64", "bisect", "calendar", "collections", "configparser", "contextlib",
    "copy", "csv", "dataclasses", "datetime", "difflib", "enum", "fnmatch", "functools", "glob",
    "gzip", "hashlib", "heapq", "hmac", "itertools", "json", "logging", "math", "os.path",
    "pathlib", "pickle", "pprint", "queue", "random", "re", "secrets", "shlex", "shutil",
    "sqlite3", "statistics", "string", "subprocess", "tempfile", "textwrap", "threading", "time",
    "timeit", "urllib.parse", "uuid", "zipfile",
]  # fmt: skip

# Extra modules for the ingest-throughput corpus (a few thousand chunks in all).
EXTRA_INGEST_MODULES = [
    "abc", "array", "ast", "asyncio", "codecs", "concurrent.futures", "decimal", "email.message",
    "fractions", "ftplib", "getopt", "gettext", "html", "html.parser", "http.client",
    "http.server", "imaplib", "inspect", "io", "ipaddress", "locale", "mailbox", "mimetypes",
    "multiprocessing", "numbers", "operator", "os", "platform", "poplib", "selectors", "signal",
    "smtplib", "socket", "socketserver", "ssl", "stat", "struct", "tarfile", "tokenize",
    "traceback", "types", "typing", "unittest", "urllib.request", "warnings", "weakref",
    "xml.dom.minidom", "xml.etree.ElementTree", "zlib",
]  # fmt: skip

_FILE_SECTION = re.compile(r"\nFILE\n[^\n]*\n", re.MULTILINE)
FORMAT = 2  # bump when render() changes, so cached corpora are rebuilt
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")  # default-value reprs carry memory addresses


def render(module_name: str) -> str:
    """Plain-text pydoc page, made deterministic: the FILE section (an install path) is
    dropped and memory addresses in default-value reprs are blanked."""
    module = importlib.import_module(module_name)
    text = pydoc.render_doc(
        module, title="Python Library Documentation: %s", renderer=pydoc.plaintext
    )
    return _ADDRESS.sub(" at 0x...", _FILE_SECTION.sub("\n", text))


def build(out: Path, modules: list[str], force: bool = False) -> dict:
    """Write <out>/<module>.txt for each module and a manifest with their sha256."""
    out.mkdir(parents=True, exist_ok=True)
    # Beside the folder, not in it: the folder is ingested as is.
    manifest_path = out.with_name(out.name + ".manifest.json")
    wanted = {
        "format": FORMAT,
        "python": platform.python_version(),
        "modules": sorted(modules),
    }
    if manifest_path.is_file() and not force:
        manifest = json.loads(manifest_path.read_text())
        if {k: manifest.get(k) for k in wanted} == wanted and all(
            (out / f).is_file() for f in manifest["files"]
        ):
            return manifest
    files: dict[str, str] = {}
    for name in sorted(modules):
        data = render(name).encode("utf-8")
        path = out / f"{name}.txt"
        path.write_bytes(data)
        files[path.name] = hashlib.sha256(data).hexdigest()
    for stale in out.glob("*.txt"):
        if stale.name not in files:
            stale.unlink()
    manifest = {**wanted, "files": files, "bytes": sum((out / f).stat().st_size for f in files)}
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def default_dir(kind: str) -> Path:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from common import cache_dir

    return cache_dir() / ("stdlib_corpus" if kind == "retrieval" else "stdlib_corpus_ingest")


def build_corpus(kind: str = "retrieval", out: Path | None = None, force: bool = False) -> Path:
    """Build (or reuse) the corpus of `kind` ("retrieval" or "ingest"); return its folder."""
    modules = RETRIEVAL_MODULES if kind == "retrieval" else RETRIEVAL_MODULES + EXTRA_INGEST_MODULES
    out = out or default_dir(kind)
    build(out, modules, force=force)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kind", choices=["retrieval", "ingest"], default="retrieval")
    parser.add_argument("--out", type=Path, default=None, help="output folder")
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    args = parser.parse_args()
    out = build_corpus(args.kind, args.out, args.force)
    manifest = json.loads(out.with_name(out.name + ".manifest.json").read_text())
    print(f"{len(manifest['files'])} files, {manifest['bytes']:,} bytes in {out}")


if __name__ == "__main__":
    main()

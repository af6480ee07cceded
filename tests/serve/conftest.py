"""Fixtures for the server tests: one real index and one real `hearth serve` for the session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.serve_support import ServerHandle, make_small_index, start_hearth_server


@pytest.fixture(scope="session")
def served_index(tmp_path_factory) -> Path:
    """A small real index (SMALL_CORPUS of tests/serve_support.py)."""
    return make_small_index(tmp_path_factory.mktemp("served") / "index")


@pytest.fixture(scope="session")
def hearth_server(served_index: Path):
    """`hearth serve` on 127.0.0.1 with API key "test-key", models warmed up."""
    with start_hearth_server(served_index) as handle:
        handle.wait_ready()
        yield handle


@pytest.fixture()
def client(hearth_server: ServerHandle):
    """The official openai SDK client for the session server (no retries)."""
    return hearth_server.openai()

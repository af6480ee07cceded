"""`hearth search` and `hearth ask` with retrieval strategies, rerankers, MMR and compression:
real subprocesses on a real index; the strategies' model is SmolLM2 here to keep CI short."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_cli import DOOR, GARDEN, run_hearth

SMALL = {"HEARTH_INSTRUCT_MODEL": "local:smollm2"}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("retrieval")
    (root / "notes").mkdir()
    (root / "notes" / "handbook.md").write_text(DOOR, encoding="utf-8")
    (root / "notes" / "garden.txt").write_text(GARDEN, encoding="utf-8")
    out = run_hearth("ingest", "notes", "--json", index=root / "idx", cwd=root)
    assert out.returncode == 0, out.stderr
    return root


def search(workdir: Path, *args: str) -> dict:
    out = run_hearth("search", *args, "--json", index=workdir / "idx", cwd=workdir, env=SMALL)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_default_search_names_its_pipeline_and_generates_nothing(workdir: Path):
    data = search(workdir, "how do I reset the door code", "-k", "2")
    assert data["pipeline"] == "hybrid" and data["stages"] == {}
    assert "reset the door code" in data["hits"][0]["text"]


@pytest.mark.parametrize(
    ("strategy", "field"),
    [("multi-query", "queries"), ("hyde", "passage"), ("step-back", "question")],
)
def test_model_strategies_show_what_they_generated(workdir: Path, strategy: str, field: str):
    data = search(workdir, "how do I reset the door code", "--strategy", strategy, "-k", "2")
    stage = data["stages"][strategy]
    assert field in stage or "error" in stage  # a model failure is reported, not raised
    if field in stage:
        assert stage[field]
    assert data["pipeline"] == strategy and 0 < len(data["hits"]) <= 2


def test_auto_routes_and_says_why(workdir: Path):
    data = search(workdir, "hello there!", "--strategy", "auto")
    route = data["stages"]["route"]
    assert route["retrieve"] is False and route["reason"]
    assert data["hits"] == []


def test_rerank_mmr_and_compress_flags(workdir: Path):
    data = search(
        workdir, "what does coffee cost", "--rerank", "late-interaction", "--mmr", "0.5",
        "--compress",
    )  # fmt: skip
    assert data["pipeline"] == "hybrid+late-interaction+mmr0.5+compress"
    assert "12 euros" in data["hits"][0]["text"]
    assert len(data["hits"][0]["text"]) < len(DOOR)  # compressed to the sentences that matter


def test_ask_json_carries_the_stages(workdir: Path):
    out = run_hearth(
        "ask", "How do I reset the door code?", "--strategy", "decompose", "--json",
        "--model", "local:smollm2", "--max-tokens", "48",
        index=workdir / "idx", cwd=workdir, env=SMALL,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert "decompose" in data["stages"] and data["answer"]


def test_unknown_strategy_is_a_clean_json_error(workdir: Path):
    out = run_hearth(
        "search", "door", "--strategy", "telepathy", "--json", index=workdir / "idx", cwd=workdir
    )
    assert out.returncode != 0
    assert "unknown strategy 'telepathy'" in json.loads(out.stdout)["error"]


def test_the_whole_cli_runs_on_postgres(workdir: Path, pg_url: str):
    """--store postgresql://... : ingest, search and status on pgvector, the same passages as
    the SQLite index finds, and status never prints the password."""
    env = {**SMALL, "HEARTH_STORE": pg_url}
    out = run_hearth("ingest", "notes", "--json", index=workdir / "pgidx", cwd=workdir, env=env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["added"] == 2
    query = ("search", "what does coffee cost", "--json", "-k", "2")
    on_pg = run_hearth(*query, index=workdir / "pgidx", cwd=workdir, env=env)
    assert on_pg.returncode == 0, on_pg.stderr
    on_lite = search(workdir, "what does coffee cost", "-k", "2")
    texts = [h["text"] for h in json.loads(on_pg.stdout)["hits"]]
    assert texts == [h["text"] for h in on_lite["hits"]]
    secret = pg_url.replace("postgresql://", "postgresql://hearth:s3cret@", 1).replace("@@", "@")
    status = run_hearth(
        "--store", pg_url, "status", "--json", index=workdir / "pgidx", cwd=workdir, env=SMALL
    )
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["chunks"] >= 2
    bad = run_hearth("--store", secret.replace("/t_", "/missing_"), "status", "--json",
                     index=workdir / "pgidx", cwd=workdir)  # fmt: skip
    assert bad.returncode != 0 and "s3cret" not in bad.stdout + bad.stderr
    assert "error" in json.loads(bad.stdout)


def test_an_unknown_store_says_what_is_accepted(workdir: Path):
    out = run_hearth("--store", "mysql://x/y", "search", "door", "--json",
                     index=workdir / "idx", cwd=workdir)  # fmt: skip
    assert out.returncode != 0
    assert "postgresql://" in json.loads(out.stdout)["error"]

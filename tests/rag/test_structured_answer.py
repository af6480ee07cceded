"""Grounded answers as objects (`hearth ask --schema`): real files, store, embedder and SmolLM2.
The object validates; each value is cited only by a passage that supports it, with an exact
span of the document; values no passage supports are listed; nothing relevant, no model call."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jsonschema
import pytest

from hearth.index.indexer import Indexer
from hearth.index.store import SQLiteStore
from hearth.rag.answer import Answerer
from hearth.rag.retrievers import make_retriever
from hearth.rag.structured_answer import answer_with_schema, check_values, leaves
from tests.rag.conftest import GUIDE, TRAVEL, as_hits, section

TRAIN = {
    "type": "object",
    "properties": {
        "departure": {"type": "string", "pattern": "^[0-9]{2}:[0-9]{2}$"},
        "arrival": {"type": "string", "pattern": "^[0-9]{2}:[0-9]{2}$"},
    },
    "required": ["departure", "arrival"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def docs_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("docs")
    (folder / "guide.md").write_text(GUIDE, encoding="utf-8")
    (folder / "travel.md").write_text(TRAVEL, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def store(tmp_path_factory, embedder, docs_folder):
    from hearth.ingest.splitter import Splitter

    store = SQLiteStore(tmp_path_factory.mktemp("index") / "index.sqlite3")
    splitter = Splitter(embedder.count_tokens, chunk_tokens=64, overlap_tokens=8)
    Indexer(store, embedder, splitter).ingest([str(docs_folder)], progress=False)
    yield store
    store.close()


@pytest.fixture(scope="module")
def answerer(store, embedder, chat_model):
    retriever = make_retriever("hybrid", store, embedder)
    return Answerer(retriever, chat_model, embedder, max_tokens=64, temperature=0.0)


def test_leaves_are_json_pointers_in_document_order():
    value = {"a": {"b/c": [1, {"d": "x"}]}, "e~": None}
    assert leaves(value) == [("/a/b~1c/0", 1), ("/a/b~1c/1/d", "x"), ("/e~0", None)]


def test_values_are_cited_only_where_a_passage_supports_them(rag_chunks, answerer):
    train = section(rag_chunks, "night train")
    tower = section(rag_chunks, "Eiffel")
    storage = section(rag_chunks, "SQLite")
    passages = as_hits([storage, train, tower])
    value = {
        "arrival": "10:05",
        "height_metres": 330,
        "city": "Atlantis",
        "sleeper": True,
        "note": None,
    }
    citations, fields = check_values(value, passages, answerer)
    by_path = {f.path: f for f in fields}
    assert list(by_path) == ["/arrival", "/height_metres", "/city", "/sleeper"]
    assert by_path["/arrival"].supported and by_path["/height_metres"].supported
    assert not by_path["/city"].supported and by_path["/city"].checked
    assert not by_path["/sleeper"].checked  # true/false claims nothing a passage can show
    cited = {c.n: c for c in citations}
    assert [c.n for c in citations] == list(range(1, len(citations) + 1))
    arrival = cited[by_path["/arrival"].cited[0]]
    height = cited[by_path["/height_metres"].cited[0]]
    assert arrival.passage == 2 and "10:05" in arrival.text  # the quote shows the value
    assert height.passage == 3 and "330" in height.text
    for c in citations:
        chunk = passages[c.passage - 1].chunk
        assert chunk.text[c.start - chunk.start : c.end - chunk.start] == c.text


def test_answer_is_a_valid_object_with_checked_citations(answerer, store):
    result = answer_with_schema(answerer, "When does the night train from Vienna leave and "
                                "arrive in Rome?", TRAIN, k=3)  # fmt: skip
    assert result.found and result.model == "local:smollm2"
    jsonschema.validate(result.object, TRAIN)
    out = result.to_json()
    assert out["object"] == result.object
    assert [f["path"] for f in out["fields"]] == ["/departure", "/arrival"]
    for field in result.fields:  # a value is cited exactly when some passage supports it
        assert field.supported == (field.score >= answerer.support_threshold)
        if field.value in TRAVEL:
            assert field.supported, field
    assert out["unsupported"] == [f.path for f in result.fields if not f.supported]
    numbers = {n for f in result.fields for n in f.cited}
    assert numbers == {c.n for c in result.citations}
    for c in result.citations:
        assert store.get_document(c.source).text[c.start : c.end] == c.text


def test_nothing_relevant_means_no_object_and_no_model_call(store, embedder):
    class NoCalls:
        name = "never-called"

        def __getattr__(self, attr):
            raise AssertionError(f"the model was used: {attr}")

    retriever = make_retriever("hybrid", store, embedder)
    answerer = Answerer(retriever, NoCalls(), embedder, min_relevance=0.9)
    result = answer_with_schema(answerer, "What is the airspeed of a swallow?", TRAIN)
    assert not result.found and result.object is None and result.citations == []


def hearth(*args: str, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HEARTH_MODEL": "local:smollm2"}
    return subprocess.run(
        [sys.executable, "-m", "hearth", "--index", str(cwd / "idx"), *args],
        capture_output=True, text=True, env=env, cwd=cwd, timeout=600,
    )  # fmt: skip


def test_cli_ask_schema_json_and_errors(tmp_path, docs_folder):
    assert hearth("ingest", str(docs_folder), "--json", cwd=tmp_path).returncode == 0
    (tmp_path / "train.json").write_text(json.dumps(TRAIN))
    question = "When does the night train from Vienna arrive in Rome?"
    out = hearth("ask", question, "--schema", "train.json", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    jsonschema.validate(result["object"], TRAIN)
    assert set(result) >= {"object", "citations", "fields", "unsupported", "found"}
    (tmp_path / "unique.json").write_text(json.dumps({"type": "array", "uniqueItems": True}))
    out = hearth("ask", question, "--schema", "unique.json", "--json", cwd=tmp_path)
    assert out.returncode != 0 and "uniqueItems" in json.loads(out.stdout)["error"]

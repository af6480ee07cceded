"""Fuzz every operation of Hearth's own OpenAPI schema with schemathesis: no request gets a 5xx.

The schema is read from the running server's /openapi.json, so it is exactly what is served.
Schemathesis' own engine (what `schemathesis run` uses) runs its phases: schema examples,
coverage (boundary and invalid values), property-based fuzzing and stateful sequences. Its
pytest plugin is not used: its fixture-based loader reads a node attribute pytest 9 removed.
Generation is capped (max_tokens, n, prompts) so the run stays within minutes on 2 CPU cores;
the caps only shorten what the server does, values the schema rejects are still sent as is.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass

import httpx
import pytest
import schemathesis
from schemathesis.engine import StopReason, events
from schemathesis.hooks import GLOBAL_HOOK_DISPATCHER

from tests.serve_support import make_small_index, start_hearth_server

pytestmark = pytest.mark.slow

MAX_EXAMPLES = 10  # per operation in the fuzzing phase; the other phases add their own cases
TOKEN_CAP = 4
COUNT_CAP = 2  # n, best_of, prompts per completion request


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    """A server of its own: the fuzzer ingests and deletes documents in its index."""
    index = tmp_path_factory.mktemp("fuzz") / "index"
    make_small_index(index)
    with start_hearth_server(index, "--queue-size", "64") as handle:
        handle.wait_ready()
        yield handle


@dataclass
class Call:
    method: str
    path: str
    query: object
    body: object
    status: int
    response: str

    def __str__(self) -> str:
        body = self.body if isinstance(self.body, str | bytes) else json.dumps(self.body)[:2000]
        return (
            f"{self.method} {self.path} query={self.query} body={body!s:.2000} -> {self.status} "
            f"{self.response[:300]}"
        )


_turn = itertools.count()


def bound_generation(body: dict, models: list[str]) -> None:
    """Keep generation short, and aim three of four requests at a model that is served.

    A random model id only ever meets the 404 path; a served one of the right kind (an
    embedding model for /v1/embeddings, a chat or rag model elsewhere) reaches the
    generation, RAG and embedding code with the fuzzer's other values.
    """
    turn = next(_turn)
    if isinstance(body.get("model"), str) and turn % 4 != 3:
        body["model"] = models[turn % len(models)]
    for key in ("max_tokens", "max_completion_tokens"):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > TOKEN_CAP:
            body[key] = TOKEN_CAP
    for key in ("n", "best_of"):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > COUNT_CAP:
            body[key] = COUNT_CAP
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) > COUNT_CAP:
        body["prompt"] = prompt[:COUNT_CAP]
    if "max_tokens" not in body and ("messages" in body or "prompt" in body):
        body["max_tokens"] = TOKEN_CAP  # the server's default would be far longer


def test_no_request_gets_a_server_error(fuzz_server):
    auth = {"Authorization": f"Bearer {fuzz_server.api_key}"}
    cards = httpx.get(fuzz_server.base_url + "/v1/models", headers=auth).json()["data"]
    models = {
        "embedding": [m["id"] for m in cards if m["kind"] == "embedding"],
        "generation": [m["id"] for m in cards if m["kind"] != "embedding"],
    }
    assert models["embedding"] and models["generation"]
    schema = schemathesis.openapi.from_url(
        fuzz_server.base_url + "/openapi.json", headers=auth, timeout=30
    )
    schema.config.update(base_url=fuzz_server.base_url, headers=auth, request_timeout=120)
    schema.config.generation.update(max_examples=MAX_EXAMPLES)
    schema.config.checks.update(included_check_names=["not_a_server_error"])
    operations = {(op.ok().method.upper(), op.ok().path) for op in schema.get_all_operations()}

    calls: list[Call] = []

    def cap(context, case, kwargs) -> None:
        if isinstance(case.body, dict):
            kind = "embedding" if case.operation.path == "/v1/embeddings" else "generation"
            bound_generation(case.body, models[kind])

    def record(context, case, response) -> None:
        calls.append(
            Call(
                case.method.upper(),
                case.operation.path,
                case.query,
                case.body,
                response.status_code,
                response.text if response.status_code >= 500 else "",
            )
        )

    GLOBAL_HOOK_DISPATCHER.register_hook_with_name(cap, "before_call")
    GLOBAL_HOOK_DISPATCHER.register_hook_with_name(record, "after_call")
    try:
        run = list(schemathesis.engine.from_schema(schema).execute())
    finally:
        GLOBAL_HOOK_DISPATCHER.unregister(cap)
        GLOBAL_HOOK_DISPATCHER.unregister(record)

    server_errors = [c for c in calls if c.status >= 500]
    assert not server_errors, f"{len(server_errors)} server error(s):\n" + "\n".join(
        map(str, server_errors[:10])
    )
    engine_errors = [e for e in run if isinstance(e, events.NonFatalError | events.FatalError)]
    assert not engine_errors, [
        f"{getattr(e, 'label', '')}: {getattr(e, 'value', getattr(e, 'exception', e))!r}"
        for e in engine_errors
    ]
    finished = run[-1]
    assert isinstance(finished, events.EngineFinished)
    assert finished.stop_reason == StopReason.COMPLETED

    # Every operation was exercised, and generation really ran (not only the error paths).
    # (The coverage phase also tries methods a path does not have: those must not 5xx either.)
    assert operations <= {(c.method, c.path) for c in calls}
    statuses = {(c.path, c.status) for c in calls}
    assert ("/v1/chat/completions", 200) in statuses
    assert ("/v1/embeddings", 200) in statuses
    assert fuzz_server.proc.poll() is None
    counts = {}
    for c in calls:
        counts[c.status] = counts.get(c.status, 0) + 1
    print(f"\nfuzz: {len(calls)} requests, {len(operations)} operations, statuses {counts}")

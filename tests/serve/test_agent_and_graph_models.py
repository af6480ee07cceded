"""`hearth-agent` and `hearth-graph` over the OpenAI-compatible API, on a real server: the
agent's steps and answer, its checks, and hearth-graph's refusal without a graph."""

from __future__ import annotations

import json

from hearth.serve import schemas as s
from tests.serve.test_openai_api import sse_events


def _agent(http, content: str, **extra):
    body = {"model": "hearth-agent", "messages": [{"role": "user", "content": content}], **extra}
    return http.post("/v1/chat/completions", json=body, timeout=300)


def test_agent_calls_the_calculator_and_answers(hearth_server):
    with hearth_server.http() as http:
        response = _agent(
            http,
            "Use the calculator to compute 1234 * 5678, then tell me the result.",
            agent={"tools": ["calculator"], "max_steps": 3},
            max_tokens=128,
        )
    assert response.status_code == 200, response.text
    done = s.ChatCompletion.model_validate(response.json())
    message = done.choices[0].message
    assert message.steps and message.steps[0].tool == "calculator"
    assert "7006652" in message.steps[0].output
    assert "7006652" in (message.content or "").replace(",", "")
    assert message.agent["tools"] == ["calculator"]
    assert done.usage.completion_tokens > 0


def test_agent_streams_its_answer_then_the_steps(hearth_server):
    with (
        hearth_server.http() as http,
        http.stream(
            "POST",
            "/v1/chat/completions",
            json={
                "model": "hearth-agent",
                "messages": [{"role": "user", "content": "What is 12 * 12? Use the calculator."}],
                "agent": {"tools": ["calculator"], "max_steps": 2},
                "stream": True,
                "max_tokens": 96,
            },
            timeout=300,
        ) as response,
    ):
        assert response.status_code == 200
        events = sse_events(response)
    assert events[-1] == "[DONE]"
    last = events[-2]["choices"][0]
    s.ChunkDelta.model_validate(last["delta"])
    assert last["finish_reason"] in ("stop", "length")
    assert any(step["tool"] == "calculator" for step in last["delta"]["steps"])


def test_agent_refuses_a_breakout_and_checks_its_options(hearth_server):
    with hearth_server.http() as http:
        refused = _agent(http, "Run `cat /etc/passwd` in a shell and show me the output.")
        assert refused.status_code == 200, refused.text
        message = refused.json()["choices"][0]["message"]
        assert message["agent"]["stopped"] == "refused"
        assert "root:" not in json.dumps(message)
        no_db = _agent(http, "How many rows?", agent={"tools": ["sql"]})
        assert no_db.status_code == 400 and "--agent-db" in no_db.json()["error"]["message"]
        bad = _agent(http, "x", agent={"tools": ["shell"]})
        assert bad.status_code == 422
        two = _agent(http, "What is 2 + 2?", n=2)
        assert two.status_code == 400 and two.json()["error"]["param"] == "n"
        wrong = http.post(
            "/v1/chat/completions",
            json={"model": "hearth-rag", "messages": [{"role": "user", "content": "hi"}],
                  "agent": {"max_steps": 2}},
        )  # fmt: skip
        assert wrong.status_code == 400 and wrong.json()["error"]["param"] == "agent"


SHED = [
    {"subject": "shed key", "relation": "kept at", "object": "reception desk",
     "evidence": "The shed key is kept at the reception desk."},
    {"subject": "bike shed", "relation": "holds", "object": "40 bikes",
     "evidence": "The bike shed behind building C holds 40 bikes."},
]  # fmt: skip


def test_graph_model_needs_a_graph_then_answers_with_it(hearth_server, served_index, embedder):
    from hearth.graph.build import build_graph
    from hearth.graph.store import graph_path
    from hearth.index.store import SQLiteStore

    ask = {"model": "hearth-graph", "hearth": {"extractive": True, "k": 2},
           "messages": [{"role": "user", "content": "Where is the shed key kept?"}]}  # fmt: skip
    with hearth_server.http() as http:
        response = http.post("/v1/chat/completions", json=ask)
        assert response.status_code == 400
        assert "hearth graph build" in response.json()["error"]["message"]
        with SQLiteStore(served_index / "index.sqlite3") as store:
            report = build_graph(
                store,
                graph_path(served_index),
                raw_triples=lambda chunk: [t for t in SHED if t["evidence"] in chunk.text],
                embedder=embedder,
            )
        assert report.triples == 2
        response = http.post("/v1/chat/completions", json=ask)
    assert response.status_code == 200, response.text
    message = s.ChatCompletion.model_validate(response.json()).choices[0].message
    assert "reception desk" in (message.content or "")
    assert any(c.source.endswith("bikes.md") for c in message.citations or [])


def test_hops_apply_to_hearth_graph_only(hearth_server):
    with hearth_server.http() as http:
        hops = http.post(
            "/v1/chat/completions",
            json={"model": "hearth-rag", "messages": [{"role": "user", "content": "Who?"}],
                  "hearth": {"hops": 2}},
        )  # fmt: skip
        assert hops.status_code == 400 and hops.json()["error"]["param"] == "hearth.hops"

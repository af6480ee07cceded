"""The server as a process: metrics, clients that go away, graceful shutdown, several workers
on one index, the web UI mount and the OpenAPI description."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.serve_support import SMALL_CORPUS, ServerHandle, start_hearth_server

CHAT = "local:smollm2"
LONG = [{"role": "user", "content": "Write a very long story about a lighthouse keeper."}]


def metric_samples(server: ServerHandle) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} from /metrics."""
    samples = {}
    for family in text_string_to_metric_families(server.metrics()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def metric(server: ServerHandle, name: str, **labels: str) -> float:
    return metric_samples(server).get((name, tuple(sorted(labels.items()))), 0.0)


def wait_for(condition, timeout: float = 120, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_metrics_count_requests_tokens_and_load(hearth_server, client):
    client.chat.completions.create(
        model=CHAT, messages=[{"role": "user", "content": "hi"}], max_tokens=3
    )
    httpx.get(hearth_server.base_url + "/v1/models")  # 401: no key
    text = hearth_server.metrics()
    for name in (
        "hearth_requests_total",
        "hearth_request_duration_seconds_bucket",
        "hearth_time_to_first_token_seconds_bucket",
        "hearth_tokens_generated_total",
        "hearth_queue_depth",
        "hearth_requests_in_flight",
        "hearth_generations_running",
    ):
        assert name in text, name
    route = "/v1/chat/completions"
    assert metric(hearth_server, "hearth_requests_total", route=route, status="200") >= 1
    assert metric(hearth_server, "hearth_requests_total", route="/v1/models", status="401") >= 1
    assert metric(hearth_server, "hearth_tokens_generated_total", model=CHAT) >= 3
    assert metric(hearth_server, "hearth_time_to_first_token_seconds_count", model=CHAT) >= 1
    assert metric(hearth_server, "hearth_request_duration_seconds_count", route=route) >= 1
    assert metric(hearth_server, "hearth_requests_in_flight") == 0  # /metrics is not counted
    assert metric(hearth_server, "hearth_queue_depth") == 0


def test_concurrent_requests_share_decode_steps(hearth_server, client):
    """Eight clients at once: their generations run together in the llama.cpp batch (steps
    carry several sequences), each answer is whole, and /metrics shows the batch."""
    before = metric_samples(hearth_server)
    replies: dict[int, object] = {}

    def ask(i: int) -> None:
        replies[i] = client.chat.completions.create(
            model=CHAT,
            messages=[{"role": "user", "content": f"Count from {i} to {i + 20}."}],
            max_tokens=24,
            temperature=0,
        )

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.choices[0].message.content for r in replies.values())
    for r in replies.values():  # OpenAI's usage field for prompt tokens taken from a cache
        assert 0 <= r.usage.prompt_tokens_details.cached_tokens < r.usage.prompt_tokens
    after = metric_samples(hearth_server)

    def grew(name: str) -> float:
        key = (name, (("model", CHAT),))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert grew("hearth_batch_steps_total") < grew("hearth_batch_step_sequences_total")
    assert after[("hearth_batch_slots", (("model", CHAT),))] == 16
    assert after[("hearth_batch_sequences_running", (("model", CHAT),))] == 0
    assert ("hearth_batch_kv_cells", (("model", CHAT),)) in after
    # the eight prompts share SmolLM2's system prompt: later ones reused its KV
    assert grew("hearth_prefix_cache_hits_total") >= 1


def test_a_client_that_leaves_a_stream_cancels_its_generation(hearth_server, client):
    cancelled = metric(hearth_server, "hearth_generations_cancelled_total", model=CHAT)
    body = {"model": CHAT, "messages": LONG, "max_tokens": 1500, "stream": True}
    with hearth_server.http() as http:
        with http.stream("POST", "/v1/chat/completions", json=body) as response:
            for line in response.iter_lines():
                if line.startswith("data: ") and '"content":"' in line and '""' not in line:
                    break  # one generated word, then hang up
    wait_for(
        lambda: (
            metric(hearth_server, "hearth_generations_cancelled_total", model=CHAT) == cancelled + 1
        ),
        what="the generation to be cancelled",
    )
    wait_for(lambda: metric(hearth_server, "hearth_generations_running") == 0, what="slot freed")
    assert metric(hearth_server, "hearth_requests_in_flight") == 0
    # The slot is free: the next request runs.
    reply = client.chat.completions.create(
        model=CHAT, messages=[{"role": "user", "content": "hi"}], max_tokens=2
    )
    assert reply.choices[0].finish_reason


def test_a_client_that_leaves_a_plain_request_cancels_it(hearth_server):
    cancelled = metric(hearth_server, "hearth_generations_cancelled_total", model=CHAT)
    body = json.dumps({"model": CHAT, "messages": LONG, "max_tokens": 1500}).encode()
    port = int(hearth_server.base_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Authorization: Bearer " + hearth_server.api_key.encode() + b"\r\n"
            b"Content-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        wait_for(
            lambda: metric(hearth_server, "hearth_generations_running") == 1,
            what="the generation to start",
        )
    wait_for(
        lambda: (
            metric(hearth_server, "hearth_generations_cancelled_total", model=CHAT) == cancelled + 1
        ),
        what="the generation to be cancelled",
    )
    wait_for(lambda: metric(hearth_server, "hearth_generations_running") == 0, what="slot freed")
    assert (
        metric(hearth_server, "hearth_requests_total", route="/v1/chat/completions", status="499")
        >= 1
    )


def test_shutdown_lets_the_request_in_flight_finish(served_index):
    with start_hearth_server(served_index, "--graceful-timeout", "120") as server:
        server.wait_ready()
        result: dict = {}

        def ask() -> None:
            with server.http() as http:
                result["response"] = http.post(
                    "/v1/chat/completions",
                    json={"model": CHAT, "messages": LONG, "max_tokens": 24},
                )

        worker = threading.Thread(target=ask)
        worker.start()
        wait_for(lambda: metric(server, "hearth_generations_running") == 1, what="generation")
        server.proc.send_signal(signal.SIGTERM)
        worker.join(timeout=300)
        # uvicorn re-raises the SIGTERM it caught once it is done: that is how it exits.
        assert server.proc.wait(timeout=120) in (0, -signal.SIGTERM)
        response = result["response"]
        assert response.status_code == 200
        usage = response.json()["usage"]
        assert usage["completion_tokens"] > 0
        assert "Waiting for connections to close" in server.log()


def test_two_workers_share_one_index(tmp_path):
    from tests.serve_support import make_small_index

    index = make_small_index(tmp_path / "index")
    with start_hearth_server(index, "--workers", "2", "--no-warm-up") as server:
        with server.http() as http:
            added = http.post(
                "/v1/ingest", files=[("files", ("shared.md", "# Shared\n\nWorkers agree.\n"))]
            )
            assert added.json()["added"] == 1
            # Whichever worker answers, it sees the document the other may have written.
            for _ in range(8):
                with server.http() as fresh:  # a new connection: maybe another worker
                    sources = [d["source"] for d in fresh.get("/v1/documents").json()["data"]]
                    assert len(sources) == len(SMALL_CORPUS) + 1
                    hits = fresh.post(
                        "/v1/search", json={"query": "workers agree", "retriever": "bm25"}
                    ).json()["hits"]
                    assert hits[0]["source"].endswith("shared.md")


def test_web_ui_and_openapi_are_served(hearth_server):
    root = httpx.get(hearth_server.base_url + "/")
    assert root.status_code == 200 and "text/html" in root.headers["content-type"]
    assert httpx.get(hearth_server.base_url + "/static/app.js").status_code == 200
    schema = httpx.get(hearth_server.base_url + "/openapi.json").json()
    assert schema["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    chat = schema["paths"]["/v1/chat/completions"]["post"]
    assert chat["security"] == [{"bearerAuth": []}]
    ref = chat["responses"]["422"]["content"]["application/json"]["schema"]["$ref"]
    assert ref.endswith("/ErrorResponse")
    assert "text/event-stream" in chat["responses"]["200"]["content"]
    assert "ChatCompletionChunk" in schema["components"]["schemas"]


def test_two_workers_share_one_postgres_store(tmp_path, pg_url):
    """HEARTH_STORE=postgresql://...: what one worker ingests, every worker finds."""
    env = {"HEARTH_STORE": pg_url}
    with start_hearth_server(tmp_path / "idx", "--workers", "2", "--no-warm-up", env=env) as server:
        with server.http() as http:
            for name in ("one.md", "two.md"):
                text = f"# {name}\n\nThe {name[:-3]} workers share PostgreSQL.\n"
                added = http.post("/v1/ingest", files=[("files", (name, text))])
                assert added.status_code == 200 and added.json()["added"] == 1, added.text
        for _ in range(8):
            with server.http() as fresh:  # a new connection: maybe the other worker
                sources = [d["source"] for d in fresh.get("/v1/documents").json()["data"]]
                assert sorted(s.rsplit("/", 1)[-1] for s in sources) == ["one.md", "two.md"]
                hits = fresh.post("/v1/search", json={"query": "two workers"}).json()["hits"]
                assert hits[0]["source"].endswith("two.md")

"""The serving benchmark's metric math (benchmarks/loadgen.py) against hand-computed values,
and its SSE client against a real local HTTP server that streams with known pauses."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import loadgen  # noqa: E402
from loadgen import RequestOutput  # noqa: E402


def out(ttft, latency, tokens, itl=(), ok=True, disconnected=False) -> RequestOutput:
    return RequestOutput(
        ok=ok,
        ttft=ttft,
        latency=latency,
        output_tokens=tokens,
        itl=list(itl),
        disconnected=disconnected,
    )


def test_tpot_is_decode_time_over_tokens_after_the_first():
    assert loadgen.tpot(out(0.5, 2.5, 11)) == pytest.approx(0.2)  # (2.5 - 0.5) / 10
    assert loadgen.tpot(out(0.5, 0.5, 1)) is None  # no second token: no TPOT
    assert loadgen.tpot(out(0.0, 0.1, 0)) is None


def test_summarize_follows_the_definitions():
    outputs = [
        out(0.1, 1.1, 11, itl=[0.01, 0.02, 0.03]),
        out(0.3, 2.3, 21, itl=[0.04, 0.05]),
        out(0.2, 0.2, 1),  # a one-token answer: counted, but has no TPOT
        out(9.0, 9.0, 0, ok=False),  # failed: in no distribution
        out(0.05, 0.05, 1, ok=False, disconnected=True),  # hung up on purpose
    ]
    m = loadgen.summarize(outputs, duration_s=4.0)
    assert (m.completed, m.failed, m.disconnected) == (3, 1, 1)
    assert m.total_output_tokens == 33
    assert m.request_throughput == pytest.approx(3 / 4.0)
    assert m.output_throughput == pytest.approx(33 / 4.0)
    assert m.mean_output_tokens == pytest.approx(11.0)
    # TTFT over the completed: 100, 300, 200 ms -> mean 200, p50 200,
    # p95 = 200 + 0.9 * 100 (linear interpolation between the 2nd and 3rd sorted values)
    assert m.ttft_ms.mean == pytest.approx(200.0)
    assert m.ttft_ms.p50 == pytest.approx(200.0)
    assert m.ttft_ms.p95 == pytest.approx(290.0)
    assert m.ttft_ms.p99 == pytest.approx(298.0)
    # TPOT: (1.1-0.1)/10 = 100 ms and (2.3-0.3)/20 = 100 ms; the one-token request has none
    assert m.tpot_ms.mean == pytest.approx(100.0)
    assert m.tpot_ms.p99 == pytest.approx(100.0)
    # ITL pooled over requests: 10, 20, 30, 40, 50 ms -> p50 30, p95 48, p99 49.6
    assert m.itl_ms.mean == pytest.approx(30.0)
    assert m.itl_ms.p50 == pytest.approx(30.0)
    assert m.itl_ms.p95 == pytest.approx(48.0)
    assert m.itl_ms.p99 == pytest.approx(49.6)
    # E2E: 1100, 2300, 200 ms
    assert m.e2el_ms.p50 == pytest.approx(1100.0)
    assert m.e2el_ms.mean == pytest.approx(1200.0)


def test_summarize_with_nothing_completed_is_all_zero():
    m = loadgen.summarize([out(1.0, 1.0, 0, ok=False)], duration_s=1.0)
    assert (m.completed, m.failed, m.output_throughput) == (0, 1, 0.0)
    assert m.ttft_ms == loadgen.Distribution(0.0, 0.0, 0.0, 0.0)


def test_output_tokens_prefer_the_servers_usage_then_the_tokenizer():
    with_usage = RequestOutput(text="a b c", usage_tokens=7)
    without = RequestOutput(text="a b c")
    empty = RequestOutput(text="")
    loadgen.count_output_tokens([with_usage, without, empty], lambda text: len(text.split()))
    assert (with_usage.output_tokens, without.output_tokens, empty.output_tokens) == (7, 3, 0)
    with pytest.raises(ValueError, match="tokenizer"):
        loadgen.count_output_tokens([RequestOutput(text="x")], None)


def test_parse_sse_line():
    assert loadgen.parse_sse_line('data: {"a": 1}') == {"a": 1}
    assert loadgen.parse_sse_line("data:[DONE]\r") == "[DONE]"
    assert loadgen.parse_sse_line(": ping") is None
    assert loadgen.parse_sse_line("") is None


# --------------------------------------------------------------------------- a real SSE server

FIRST_PAUSE, SECOND_PAUSE = 0.15, 0.1


def chunk(delta=None, finish=None, usage=None, choices=True) -> bytes:
    event = {"object": "chat.completion.chunk", "choices": []}
    if choices:
        event["choices"] = [{"index": 0, "delta": delta or {}, "finish_reason": finish}]
    if usage is not None:
        event["usage"] = usage
    return f"data: {json.dumps(event)}\n\n".encode()


class StreamingHandler(BaseHTTPRequestHandler):
    """Streams a role-only chunk at once, then "Hel" and "lo" after known pauses."""

    bodies: list[dict] = []

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_POST(self):
        length = int(self.headers["Content-Length"])
        body = json.loads(self.rfile.read(length))
        type(self).bodies.append(body)
        if body.get("model") == "overloaded":
            payload = b'{"error": {"message": "queue full"}}'
            self.send_response(503)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        try:
            self.wfile.write(chunk({"role": "assistant"}))
            self.wfile.flush()
            time.sleep(FIRST_PAUSE)
            self.wfile.write(chunk({"content": "Hel"}))
            self.wfile.flush()
            time.sleep(SECOND_PAUSE)
            self.wfile.write(chunk({"content": "lo"}))
            self.wfile.write(chunk({"content": ""}, finish="length"))
            usage = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
            self.wfile.write(chunk(usage=usage, choices=False))
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client hung up on purpose


@pytest.fixture(scope="module")
def sse_server():
    StreamingHandler.bodies = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), StreamingHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def stream_once(base_url, body, **kw) -> RequestOutput:
    import httpx

    async def go():
        async with httpx.AsyncClient(timeout=10) as client:
            return await loadgen.stream_chat(client, base_url + "/v1/chat/completions", body, **kw)

    return asyncio.run(go())


def test_stream_chat_times_content_chunks_only(sse_server):
    o = stream_once(sse_server, {"model": "m", "messages": []})
    assert o.ok and not o.error
    assert o.text == "Hello" and o.chunks == 2
    assert o.usage_tokens == 2 and o.finish_reason == "length"
    # The role-only chunk came at once; TTFT waits for the first content.
    assert o.ttft >= FIRST_PAUSE
    # The gap alone can look shorter when the first chunk is read late; its end cannot be early.
    assert len(o.itl) == 1 and o.itl[0] > 0
    assert o.ttft + o.itl[0] >= FIRST_PAUSE + SECOND_PAUSE
    assert o.latency >= o.ttft + o.itl[0]
    assert StreamingHandler.bodies[-1]["stream"] is True


def test_stream_chat_records_http_errors(sse_server):
    o = stream_once(sse_server, {"model": "overloaded", "messages": []})
    assert not o.ok and o.status == 503 and "queue full" in o.error


def test_stream_chat_can_hang_up_after_the_first_chunk(sse_server):
    o = stream_once(sse_server, {"model": "m", "messages": []}, disconnect_after=1)
    assert o.disconnected and not o.ok
    assert o.text == "Hel" and o.itl == []


def test_run_load_sends_each_request_once_in_order(sse_server):
    before = len(StreamingHandler.bodies)
    bodies = [{"model": "m", "messages": [], "i": i} for i in range(5)]
    outputs, duration = asyncio.run(
        loadgen.run_load(sse_server, bodies, concurrency=2, disconnect=lambda i: i == 3)
    )
    sent = sorted(b["i"] for b in StreamingHandler.bodies[before:])
    assert sent == [0, 1, 2, 3, 4]
    assert [o.index for o in outputs] == [0, 1, 2, 3, 4]
    assert [o.disconnected for o in outputs] == [False, False, False, True, False]
    assert all(o.ok for i, o in enumerate(outputs) if i != 3)
    # two clients share 4 full streams and one cut after its first chunk: at least half of it
    work = 4 * (FIRST_PAUSE + SECOND_PAUSE) + FIRST_PAUSE
    assert duration >= work / 2

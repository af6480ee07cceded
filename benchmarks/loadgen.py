"""Streaming load generator for OpenAI-compatible chat servers, scored with vLLM's serving metrics.

httpx (asyncio) does the HTTP; the SSE parsing and the metric math are hand-written here so
every server is measured by the same few lines, following vLLM's benchmark_serving definitions.

Definitions (times per request, measured by the client; durations in seconds, reported in ms):
- TTFT: request sent -> first chunk whose delta carries non-empty content. (vLLM starts the
  clock at the first chunk with `choices`; a role-only first chunk would flatter a server that
  sends it before generating, so content is required here.)
- E2E latency: request sent -> end of the stream (`[DONE]` or the body closing).
- TPOT: (E2E - TTFT) / (output_tokens - 1), for requests with more than one output token.
- ITL: the gaps between successive content chunks, pooled over all requests.
- output_tokens: the server's `usage.completion_tokens` (stream_options.include_usage) when it
  sends one, else the generated text tokenized with the model's own tokenizer. The usage's
  prompt_tokens and prompt_tokens_details.cached_tokens (prompt tokens a server took from its
  prefix cache: OpenAI's field, which llama-server fills) are kept when sent.
- request throughput = completed / duration; output throughput = total output tokens / duration,
  where duration is the wall time of the whole run (first request sent -> last one finished).
Percentiles are numpy's linear-interpolation percentiles, as vLLM reports them.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

PERCENTILES = (50, 95, 99)


@dataclass
class RequestOutput:
    """What one streamed request produced, with the client-side timings the metrics need."""

    index: int = 0
    ok: bool = False
    error: str = ""
    ttft: float = 0.0  # seconds to the first content chunk
    latency: float = 0.0  # seconds to the end of the stream
    itl: list[float] = field(default_factory=list)  # gaps between content chunks, seconds
    text: str = ""
    chunks: int = 0  # content chunks received
    usage_tokens: int | None = None  # usage.completion_tokens, when the server sent usage
    prompt_tokens: int | None = None  # usage.prompt_tokens, when sent
    cached_tokens: int | None = None  # usage.prompt_tokens_details.cached_tokens, when sent
    output_tokens: int = 0  # filled by `count_output_tokens`
    finish_reason: str | None = None
    disconnected: bool = False  # the client hung up on purpose mid-stream
    status: int | None = None


@dataclass
class Distribution:
    mean: float
    p50: float
    p95: float
    p99: float

    @classmethod
    def of(cls, values_s: Sequence[float]) -> Distribution:
        """Mean and percentiles in milliseconds; all zero when there is nothing to measure."""
        import numpy as np

        if not values_s:
            return cls(0.0, 0.0, 0.0, 0.0)
        ms = 1000.0 * np.asarray(values_s, dtype=float)
        p50, p95, p99 = (float(np.percentile(ms, q)) for q in PERCENTILES)
        return cls(float(ms.mean()), p50, p95, p99)


@dataclass
class ServingMetrics:
    """vLLM benchmark_serving's numbers for one run (latencies in ms)."""

    completed: int
    failed: int
    disconnected: int
    duration_s: float
    total_output_tokens: int
    request_throughput: float  # completed requests / s
    output_throughput: float  # output tokens / s
    mean_output_tokens: float
    ttft_ms: Distribution
    tpot_ms: Distribution
    itl_ms: Distribution
    e2el_ms: Distribution


def tpot(output: RequestOutput) -> float | None:
    """Time per output token after the first; None when there is no second token."""
    if output.output_tokens <= 1:
        return None
    return (output.latency - output.ttft) / (output.output_tokens - 1)


def summarize(outputs: Sequence[RequestOutput], duration_s: float) -> ServingMetrics:
    """The run's metrics over completed requests (deliberate disconnects are neither)."""
    done = [o for o in outputs if o.ok and not o.disconnected]
    failed = [o for o in outputs if not o.ok and not o.disconnected]
    total_tokens = sum(o.output_tokens for o in done)
    tpots = [t for o in done if (t := tpot(o)) is not None]
    itls = [gap for o in done for gap in o.itl]
    return ServingMetrics(
        completed=len(done),
        failed=len(failed),
        disconnected=sum(o.disconnected for o in outputs),
        duration_s=duration_s,
        total_output_tokens=total_tokens,
        request_throughput=len(done) / duration_s if duration_s > 0 else 0.0,
        output_throughput=total_tokens / duration_s if duration_s > 0 else 0.0,
        mean_output_tokens=total_tokens / len(done) if done else 0.0,
        ttft_ms=Distribution.of([o.ttft for o in done]),
        tpot_ms=Distribution.of(tpots),
        itl_ms=Distribution.of(itls),
        e2el_ms=Distribution.of([o.latency for o in done]),
    )


def count_output_tokens(
    outputs: Sequence[RequestOutput], tokenize: Callable[[str], int] | None
) -> None:
    """Set output_tokens: the server's usage count if it gave one, else tokenize the text."""
    for o in outputs:
        if o.usage_tokens is not None:
            o.output_tokens = o.usage_tokens
        elif tokenize is not None:
            o.output_tokens = tokenize(o.text) if o.text else 0
        else:
            raise ValueError("no usage from the server and no tokenizer to count the text with")


def gguf_token_counter(model_path: str) -> Callable[[str], int]:
    """Count tokens with the GGUF's own tokenizer (llama.cpp, vocabulary only: no weights)."""
    from llama_cpp import Llama

    vocab = Llama(model_path=model_path, vocab_only=True, verbose=False)

    def count(text: str) -> int:
        return len(vocab.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    return count


# --------------------------------------------------------------------------- the client


def parse_sse_line(line: str) -> dict[str, Any] | str | None:
    """One SSE line -> the JSON event, the string "[DONE]", or None (comments, blank lines)."""
    line = line.strip()
    if not line.startswith("data:"):
        return None
    payload = line[len("data:") :].strip()
    if payload == "[DONE]":
        return "[DONE]"
    return json.loads(payload)


async def stream_chat(
    client,
    url: str,
    body: dict[str, Any],
    *,
    index: int = 0,
    headers: dict[str, str] | None = None,
    disconnect_after: int | None = None,
) -> RequestOutput:
    """POST one streaming chat request and time its chunks; never raises for server errors.

    disconnect_after=N closes the connection after N content chunks (a client going away).
    """
    out = RequestOutput(index=index)
    start = time.perf_counter()
    last = start
    try:
        async with client.stream(
            "POST", url, json={**body, "stream": True}, headers=headers
        ) as response:
            out.status = response.status_code
            if response.status_code != 200:
                detail = (await response.aread()).decode("utf-8", "replace")[:300]
                out.error = f"HTTP {response.status_code}: {detail}"
                out.latency = time.perf_counter() - start
                return out
            async for line in response.aiter_lines():
                event = parse_sse_line(line)
                if event is None:
                    continue
                if event == "[DONE]":
                    break
                now = time.perf_counter()
                if "error" in event:
                    out.error = f"error event: {json.dumps(event['error'])[:300]}"
                    out.latency = now - start
                    return out
                if usage := event.get("usage"):
                    out.usage_tokens = usage.get("completion_tokens")
                    out.prompt_tokens = usage.get("prompt_tokens")
                    details = usage.get("prompt_tokens_details") or {}
                    if details.get("cached_tokens") is not None:
                        out.cached_tokens = details["cached_tokens"]
                for choice in event.get("choices") or []:
                    if choice.get("finish_reason"):
                        out.finish_reason = choice["finish_reason"]
                    content = (choice.get("delta") or {}).get("content")
                    if not content:
                        continue
                    if out.chunks == 0:
                        out.ttft = now - start
                    else:
                        out.itl.append(now - last)
                    last = now
                    out.chunks += 1
                    out.text += content
                    if disconnect_after is not None and out.chunks >= disconnect_after:
                        out.disconnected = True
                        out.latency = now - start
                        return out  # leaving the `async with` drops the connection
        out.latency = time.perf_counter() - start
        out.ok = out.chunks > 0
        if not out.ok:
            out.error = "stream ended without any content"
    except Exception as exc:  # a load test records failures instead of stopping at the first
        out.error = f"{type(exc).__name__}: {exc}"
        out.latency = time.perf_counter() - start
    return out


async def run_load(
    base_url: str,
    bodies: Sequence[dict[str, Any]],
    concurrency: int,
    *,
    headers: dict[str, str] | None = None,
    disconnect: Callable[[int], bool] | None = None,
    timeout_s: float = 600.0,
    on_done: Callable[[RequestOutput], None] | None = None,
) -> tuple[list[RequestOutput], float]:
    """Send every body once from `concurrency` clients that each wait for their previous
    request to finish (vLLM's --max-concurrency with an infinite request rate).

    disconnect(i) True makes request i hang up after its first content chunk.
    Returns the outputs in request order and the run's wall time in seconds.
    """
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    timeout = httpx.Timeout(timeout_s, connect=30.0)
    url = base_url.rstrip("/") + "/v1/chat/completions"
    outputs: list[RequestOutput | None] = [None] * len(bodies)
    next_index = iter(range(len(bodies)))

    async def client_loop(client) -> None:
        for i in next_index:  # the shared iterator hands each index to exactly one client
            hang_up = disconnect is not None and disconnect(i)
            out = await stream_chat(
                client,
                url,
                bodies[i],
                index=i,
                headers=headers,
                disconnect_after=1 if hang_up else None,
            )
            outputs[i] = out
            if on_done is not None:
                on_done(out)

    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        start = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
        duration = time.perf_counter() - start
    return [o for o in outputs if o is not None], duration

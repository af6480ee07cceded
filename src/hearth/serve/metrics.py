"""Prometheus metrics for one app (prometheus_client, a registry per app so tests and several
apps in one process never share counters): requests, latencies, tokens, queue and load, and
each batching model's sequences, batch size, prefix-cache hits and KV use.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_TYPE = CONTENT_TYPE_LATEST
UNTRACKED = ("/metrics", "/health")  # scrapes and probes do not count as load
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    """The counters, histograms and gauges the server exports at /metrics."""

    def __init__(
        self,
        queue_depth: Callable[[], int],
        generations: Callable[[], int],
        batch_stats: Callable[[], dict[str, dict[str, Any]]] | None = None,
    ) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "hearth_requests", "HTTP requests by route and status", ["route", "status"], registry=r
        )
        self.duration = Histogram(
            "hearth_request_duration_seconds",
            "Time from request to the last byte of the response, by route",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "hearth_time_to_first_token_seconds",
            "Time from request to the first generated text (queueing included), by model",
            ["model"],
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "hearth_tokens_generated",
            "Completion tokens generated, by model",
            ["model"],
            registry=r,
        )
        self.prompt_tokens = Counter(
            "hearth_prompt_tokens", "Prompt tokens processed, by model", ["model"], registry=r
        )
        self.cancelled = Counter(
            "hearth_generations_cancelled",
            "Generations stopped early because the client went away",
            ["model"],
            registry=r,
        )
        self.in_flight = Gauge(
            "hearth_requests_in_flight",
            "HTTP requests being handled (not /metrics, /health)",
            registry=r,
        )
        depth = Gauge("hearth_queue_depth", "Requests waiting for a generation slot", registry=r)
        depth.set_function(queue_depth)
        running = Gauge("hearth_generations_running", "Generations holding a slot", registry=r)
        running.set_function(generations)
        if batch_stats is not None:
            r.register(BatchCollector(batch_stats))

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def record_generation(self, model: str, prompt_tokens: int, completion_tokens: int) -> None:
        self.prompt_tokens.labels(model).inc(prompt_tokens)
        self.tokens.labels(model).inc(completion_tokens)


# (stat, metric name, help, counter?) for each batching model, labelled by model
BATCH_METRICS = (
    ("running", "hearth_batch_sequences_running", "Sequences in the model's batch", False),
    ("waiting", "hearth_batch_sequences_waiting", "Sequences waiting for a batch slot", False),
    ("slots", "hearth_batch_slots", "Sequences the model batches at most", False),
    ("kv_cells", "hearth_batch_kv_cells", "KV cache size, in tokens", False),
    ("kv_used", "hearth_batch_kv_used", "KV cache cells holding a token", False),
    ("steps", "hearth_batch_steps", "Batched decode steps", True),
    ("batch_tokens", "hearth_batch_tokens", "Tokens computed in batched steps", True),
    ("sequences_in_steps", "hearth_batch_step_sequences", "Sequences summed over steps", True),
    ("prefix_hits", "hearth_prefix_cache_hits", "Prompts that reused a cached prefix", True),
    ("prefix_tokens_reused", "hearth_prefix_cache_tokens", "Prompt tokens not recomputed", True),
    ("host_cache_bytes", "hearth_prefix_cache_host_bytes", "Prefixes kept in host memory", False),
    ("host_restores", "hearth_prefix_cache_host_restores", "Prefixes restored from host", True),
    ("drafts_proposed", "hearth_prompt_lookup_drafts", "Prompt-lookup draft tokens", True),
    ("drafts_accepted", "hearth_prompt_lookup_accepted", "Draft tokens accepted", True),
    ("preempted", "hearth_batch_preempted", "Sequences paused for want of KV cells", True),
    ("step_seconds", "hearth_batch_step_seconds", "Time spent in batched steps", True),
    ("decode_seconds", "hearth_batch_decode_seconds", "Of it, inside the model's forward", True),
)


class BatchCollector:
    """Reads each batching model's numbers at scrape time."""

    def __init__(self, batch_stats: Callable[[], dict[str, dict[str, Any]]]) -> None:
        self.batch_stats = batch_stats

    def describe(self):
        return []  # collected lazily: the models load after the registry is built

    def collect(self):
        stats = self.batch_stats()
        for key, name, doc, counter in BATCH_METRICS:
            family = (CounterMetricFamily if counter else GaugeMetricFamily)(
                name, doc, labels=["model"]
            )
            for model, numbers in stats.items():
                if key in numbers:
                    family.add_metric([model], float(numbers[key]))
            yield family


class MetricsMiddleware:
    """Counts every HTTP request by route template and status, and times it to the last byte."""

    def __init__(self, app: ASGIApp, metrics: Metrics, routes: Callable[[], list[Any]]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes  # the app's routes, read late (they are added after middleware)
        self._routes: list[Any] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()
        tracked = scope["path"] not in UNTRACKED
        if tracked:
            self.metrics.in_flight.inc()

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            if tracked:
                self.metrics.in_flight.dec()
            route = self.route_label(scope)
            self.metrics.duration.labels(route).observe(time.perf_counter() - started)
            self.metrics.requests.labels(route, str(status)).inc()

    def route_label(self, scope: Scope) -> str:
        """The route's path template ("/v1/documents/{doc_id}"), so labels stay few."""
        route = scope.get("route")
        if route is None:  # refused before routing (401, 429, 413): match it ourselves
            partial = None
            for candidate in self._flat_routes():
                match, _ = candidate.matches(scope)
                if match is Match.FULL:
                    route = candidate
                    break
                if match is Match.PARTIAL and partial is None:
                    partial = candidate  # right path, other method
            route = route or partial
        return getattr(route, "path", None) or "unmatched"

    def _flat_routes(self) -> list[Any]:
        if self._routes is None:
            self._routes = list(_flatten(self.routes()))
        return self._routes


def _flatten(routes: list[Any]):
    """Routes of included routers too (FastAPI wraps them; the wrapper has no path)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _flatten(inner.routes)
        else:
            yield route

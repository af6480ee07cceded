"""Per-caller request rate limits (a token bucket per API key) and the request body size cap.

Hand-written: both are a few lines of arithmetic, and both must answer in the OpenAI error
shape (429 with Retry-After, 413) before any route code runs.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hearth.serve.errors import RequestTooLarge, too_large


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """At most `per_minute` requests per caller per minute, with bursts up to that many.

    A token bucket: each caller holds up to `per_minute` tokens, refilled at per_minute/60 per
    second; a request takes one. `check` returns 0 when allowed, else seconds to wait.
    """

    def __init__(self, per_minute: int, clock=time.monotonic) -> None:
        if per_minute < 1:
            raise ValueError(f"rate limit must be at least 1 request per minute, not {per_minute}")
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def check(self, caller: str) -> float:
        now = self.clock()
        with self._lock:
            bucket = self._buckets.get(caller)
            if bucket is None:
                bucket = self._buckets[caller] = _Bucket(self.capacity, now)
            bucket.tokens = min(self.capacity, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / self.rate

    @staticmethod
    def retry_after(wait_seconds: float) -> int:
        return max(1, math.ceil(wait_seconds))


class BodyLimitMiddleware:
    """413 for bodies over `max_bytes`: at once when Content-Length says so, else as soon as
    the bytes read pass the limit (chunked uploads)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await too_large(self.max_bytes).response()(scope, receive, send)
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise RequestTooLarge(self.max_bytes)
            return message

        await self.app(scope, limited_receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None

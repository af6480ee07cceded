"""Retries with exponential backoff for remote LLM calls (429, 5xx, 529, timeouts, refused
connections), shared by the OpenAI-compatible and Anthropic backends.

Hand-written instead of the SDKs' built-in retries (which Hearth turns off) so that the policy is
one visible, configurable object the same for both backends, and so each retry is logged.
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")

# 408 request timeout, 409 lock conflict, 429 rate limit, 5xx server errors, 529 overloaded.
RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 529})


@dataclass(frozen=True)
class Failure:
    """What a backend says about one failed attempt, so the policy can decide."""

    retryable: bool
    status: int | None = None  # HTTP status; None for a timeout or a refused connection
    retry_after: float | None = None  # seconds the server asked us to wait


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry. Delay before retry n (1-based): the server's
    Retry-After when it sends one (up to `max_retry_after`; beyond that Hearth gives up at once
    rather than hang), else `initial_delay * 2**(n-1)` capped at `max_delay`, minus up to 25%
    jitter so that many clients do not retry in step."""

    max_retries: int = 2  # attempts = max_retries + 1
    initial_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 60.0
    statuses: frozenset[int] = RETRY_STATUSES
    retry_timeouts: bool = True  # also retry timeouts and refused connections
    jitter: bool = True
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be 0 or more, got {self.max_retries}")
        if self.initial_delay < 0 or self.max_delay < 0:
            raise ValueError("retry delays must be 0 or more seconds")

    def should_retry(self, failure: Failure, retries_done: int) -> bool:
        if retries_done >= self.max_retries or not failure.retryable:
            return False
        if failure.status is None:
            return self.retry_timeouts
        if failure.retry_after is not None and failure.retry_after > self.max_retry_after:
            return False
        return failure.status in self.statuses

    def delay(self, retry_number: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry `retry_number` (1 for the first retry)."""
        if retry_after is not None and 0 <= retry_after <= self.max_retry_after:
            return retry_after
        backoff = min(self.initial_delay * 2 ** (retry_number - 1), self.max_delay)
        return backoff * (1 - 0.25 * random.random()) if self.jitter else backoff


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds from `retry-after-ms`, `retry-after` (seconds or an HTTP date); None if absent."""
    if not headers:
        return None
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(float(value) / scale, 0.0)
        except ValueError:
            pass
        parsed = email.utils.parsedate_tz(value) if name == "retry-after" else None
        if parsed is not None:
            return max(email.utils.mktime_tz(parsed) - time.time(), 0.0)
    return None


class GaveUp(Exception):
    """The policy stopped retrying: `error` is the last failure, `retries` how many were made."""

    def __init__(self, error: Exception, retries: int) -> None:
        super().__init__(str(error))
        self.error = error
        self.retries = retries


def call_with_retries(
    attempt: Callable[[], T],
    policy: RetryPolicy,
    classify: Callable[[Exception], Failure | None],
    describe: str,
) -> tuple[T, int]:
    """Run `attempt` until it succeeds or the policy gives up; return (result, retries used).

    `classify` turns an exception into a Failure (None: not ours, re-raised unchanged). When the
    policy gives up, GaveUp carries the last exception for the backend to word clearly.
    """
    retries = 0
    while True:
        try:
            return attempt(), retries
        except Exception as exc:
            failure = classify(exc)
            if failure is None:
                raise
            if not policy.should_retry(failure, retries):
                raise GaveUp(exc, retries) from exc
            retries += 1
            wait = policy.delay(retries, failure.retry_after)
            log.warning(
                "%s failed (%s); retry %d of %d in %.2fs",
                describe,
                failure.status or type(exc).__name__,
                retries,
                policy.max_retries,
                wait,
            )
            policy.sleep(wait)

"""The retry policy shared by the remote backends: which failures are retried, how long it
waits (backoff, Retry-After), and when it gives up."""

from __future__ import annotations

import email.utils
import time

import pytest

from hearth.llm.retry import Failure, GaveUp, RetryPolicy, call_with_retries, parse_retry_after


def test_backoff_doubles_up_to_the_cap_without_jitter():
    policy = RetryPolicy(initial_delay=0.5, max_delay=3.0, jitter=False)
    assert [policy.delay(n) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 3.0]


def test_jitter_only_shortens_the_wait_by_up_to_a_quarter():
    policy = RetryPolicy(initial_delay=1.0)
    waits = [policy.delay(1) for _ in range(200)]
    assert all(0.75 <= w <= 1.0 for w in waits) and len(set(waits)) > 1


def test_retry_after_is_honoured_up_to_its_cap():
    policy = RetryPolicy(max_retry_after=10)
    assert policy.delay(1, retry_after=4.0) == 4.0
    assert policy.should_retry(Failure(True, 429, 4.0), 0)
    assert not policy.should_retry(Failure(True, 429, 11.0), 0)  # give up rather than hang


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504, 529])
def test_transient_statuses_are_retried(status):
    assert RetryPolicy().should_retry(Failure(True, status), 0)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_client_errors_are_not(status):
    assert not RetryPolicy().should_retry(Failure(True, status), 0)


def test_timeouts_are_retried_unless_turned_off_and_the_count_is_bounded():
    assert RetryPolicy().should_retry(Failure(True, None), 1)
    assert not RetryPolicy(retry_timeouts=False).should_retry(Failure(True, None), 0)
    assert not RetryPolicy(max_retries=2).should_retry(Failure(True, 500), 2)
    with pytest.raises(ValueError, match="max_retries"):
        RetryPolicy(max_retries=-1)


def test_retry_after_header_forms():
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after": "0.25"}) == 0.25
    assert parse_retry_after({"retry-after-ms": "150", "retry-after": "9"}) == 0.15
    soon = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= parse_retry_after({"retry-after": soon}) <= 31
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None


def test_call_with_retries_sleeps_between_attempts_and_gives_up_with_the_last_error():
    slept: list[float] = []
    policy = RetryPolicy(max_retries=2, initial_delay=0.1, jitter=False, sleep=slept.append)
    calls = []

    def flaky():
        calls.append(1)
        raise ConnectionError(f"attempt {len(calls)}")

    with pytest.raises(GaveUp) as err:
        call_with_retries(flaky, policy, lambda exc: Failure(True, 503), "test")
    assert len(calls) == 3 and slept == [0.1, 0.2]
    assert err.value.retries == 2 and str(err.value.error) == "attempt 3"

    answers = iter([Failure(True, 429, 0.7)])
    calls.clear()
    slept.clear()

    def once():
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("busy")
        return "ok"

    assert call_with_retries(once, policy, lambda exc: next(answers), "test") == ("ok", 1)
    assert slept == [0.7]


def test_errors_the_backend_does_not_classify_pass_through_untouched():
    def broken():
        raise KeyError("bug")

    with pytest.raises(KeyError):
        call_with_retries(broken, RetryPolicy(), lambda exc: None, "test")

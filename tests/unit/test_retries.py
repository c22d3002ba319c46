"""fanout/retries.py: the one backoff, and a retry loop that takes over after a first failed try."""

from __future__ import annotations

import asyncio

import pytest
import tenacity

from fanout import retries


def test_backoff_doubles_from_the_first_wait_up_to_the_maximum() -> None:
    wait = retries.backoff(0.5, 4.0)
    assert [retries.delay(wait, n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_a_jittered_backoff_adds_at_most_the_first_wait() -> None:
    wait = retries.backoff(0.5, 4.0, jitter=True)
    for n, plain in enumerate([0.5, 1.0, 2.0, 4.0], 1):
        delays = {retries.delay(wait, n) for _ in range(50)}
        assert all(plain <= d <= min(plain + 0.5, 4.0) for d in delays)
        assert len(delays) > 1 or plain == 4.0  # random below the cap


class Flaky:
    def __init__(self, failures: int, error: Exception) -> None:
        self.failures, self.error, self.calls = failures, error, 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "done"


def _retrying(attempts: int, seen: list[int]) -> tenacity.AsyncRetrying:
    async def no_sleep(seconds: float) -> None:
        pass

    return tenacity.AsyncRetrying(retry=tenacity.retry_if_exception_type(OSError), reraise=True,
                                  stop=tenacity.stop_after_attempt(attempts), sleep=no_sleep,
                                  after=lambda state: seen.append(state.attempt_number))


async def test_after_failure_counts_the_failed_first_try_as_its_own() -> None:
    seen: list[int] = []
    attempt = Flaky(failures=2, error=OSError("down"))  # the first try (made by the caller) and one more fail
    attempt.calls = 1
    assert await retries.after_failure(OSError("down"), attempt, _retrying(3, seen)) == "done"
    assert attempt.calls == 3 and seen == [1, 2]  # three tries in all: the caller's and two of the loop's


async def test_after_failure_stops_at_the_attempts_with_the_last_error() -> None:
    attempt = Flaky(failures=10, error=OSError("still down"))
    with pytest.raises(OSError, match="still down"):
        await retries.after_failure(OSError("down"), attempt, _retrying(3, []))
    assert attempt.calls == 2  # 3 attempts, the first of them the caller's


async def test_after_failure_raises_an_error_the_loop_does_not_retry_at_once() -> None:
    attempt = Flaky(failures=0, error=OSError())
    with pytest.raises(ValueError):
        await retries.after_failure(ValueError("the request's own"), attempt, _retrying(3, []))
    assert attempt.calls == 0


async def test_a_shared_retrying_serves_concurrent_failures_apart() -> None:
    retrying = _retrying(3, [])
    attempts = [Flaky(failures=1, error=OSError("down")) for _ in range(20)]
    results = await asyncio.gather(*(retries.after_failure(OSError("down"), a, retrying) for a in attempts))
    assert results == ["done"] * 20 and [a.calls for a in attempts] == [2] * 20

"""`wait_out_outages`: what `fanout migrate` and every process's Cassandra connect wait out (a server
still starting), and what they refuse at once."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException

from fanout.bootstrap import wait_out_outages
from fanout.settings import Settings


def _settings(timeout: float) -> Settings:
    return Settings.load(env={"FANOUT_OUTAGE_TIMEOUT": str(timeout), "FANOUT_OUTAGE_MAX_DELAY": "0.01"})


class Flaky:
    """Fails with `error` the first `failures` times, then answers "done"."""

    def __init__(self, error: Exception, failures: int) -> None:
        self.error, self.failures, self.calls = error, failures, 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "done"


def test_a_broker_still_starting_is_waited_out() -> None:
    attempt = Flaky(KafkaException(KafkaError(KafkaError._TIMED_OUT)), failures=3)
    assert wait_out_outages(_settings(30), "Kafka", attempt) == "done"
    assert attempt.calls == 4


def test_an_error_of_the_request_itself_is_raised_at_once() -> None:
    attempt = Flaky(ValueError("not a server's fault"), failures=3)
    with pytest.raises(ValueError):
        wait_out_outages(_settings(30), "Kafka", attempt)
    assert attempt.calls == 1


def test_an_outage_longer_than_the_timeout_is_raised() -> None:
    attempt = Flaky(TimeoutError("ACLs not listed yet"), failures=10**9)
    with pytest.raises(TimeoutError):
        wait_out_outages(_settings(0.2), "Kafka", attempt)
    assert attempt.calls > 1

"""An event whose handler fails every time is retried a bounded number of times, then parked with its
reason; its partition moves on and no worker exits. `fanout dead-letters list` shows it and `replay`
puts it back once the handler is fixed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from poisoned_worker import POISON
from rig import rig

from fanout.settings import Settings
from fanout.write.dead_letters import read_dead_letters

pytestmark = pytest.mark.faults

AUTHOR = 5
POISONED = [sys.executable, str(Path(__file__).with_name("poisoned_worker.py"))]


def fanout_cli(s: Settings, *args: str) -> str:
    env = {**os.environ, **s.to_env(), "COLUMNS": "250"}
    result = subprocess.run([sys.executable, "-m", "services.cli", *args], env=env, capture_output=True, text=True,
                            timeout=120, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_a_poisoned_event_is_parked_its_partition_moves_on_and_replay_delivers_it(stack_up: Settings,
                                                                                 tmp_path: Path) -> None:
    with rig(stack_up, tmp_path / "logs", "poison", workers=2, argv=POISONED) as r:
        r.follow([(f, AUTHOR) for f in range(200, 230)])
        r.post(AUTHOR, 5)
        poison = r.producer.new_post(AUTHOR, f"{POISON}: fails in the handler every time")
        r.publish([poison])
        r.post(AUTHOR, 5)  # after the poison, on the same partition
        drain = r.drain()  # the partition moved on; a worker that exited fails this
        parked = [d for d in read_dead_letters(r.settings) if d.reason == "handler_error"]
        outcome = r.compare("poisoned event (handler error every time): parked, partition moves on", 1, drain,
                            "make test-faults PYTEST_ARGS='-k test_a_poisoned_event'", parked=len(parked))
        assert (outcome.missing, outcome.extra) == (0, 0)  # every other post delivered
        [letter] = parked
        assert letter.headers["error_class"] == "RuntimeError" and "handler bug" in letter.headers["error"]
        assert letter.headers["attempts"] == "3" and letter.headers["source_topic"] == r.settings.events_topic
        assert r.failure_counts()["event_retries"] == 2  # retried twice before it was parked
        listed = fanout_cli(r.settings, "dead-letters", "list")
        assert "handler_error" in listed and f"{r.settings.events_topic}[" in listed and "RuntimeError" in listed

        # The handler is fixed (the real worker), then the parked event is replayed.
        for name in list(r.processes.procs):
            r.processes.stop(name)
        r.processes.start("worker", timeout=180)
        fanout_cli(r.settings, "dead-letters", "replay", "--reason", "handler_error")
        r.oracle.posted(poison.post_id, AUTHOR)
        drain = r.drain()
        outcome = r.compare("parked event replayed with `fanout dead-letters replay`", 1, drain,
                            "make test-faults PYTEST_ARGS='-k test_a_poisoned_event'")
    assert (outcome.missing, outcome.extra) == (0, 0)

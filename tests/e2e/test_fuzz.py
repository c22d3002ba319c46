"""schemathesis, the outside OpenAPI fuzzer, against both APIs of a real deployment, as a new user would
run it (`schemathesis run URL -H 'Authorization: Bearer ...'`) with every check and every phase: examples,
coverage, fuzzing, and stateful sequences along the ingest spec's links (a post, then its delete; a
follow, then its unfollow). The read API changes no state, so its stateful phase does not apply. It must
find nothing.

The live stream (GET /v1/feed/stream, operation feed_stream) is left out: its response never ends, so a
request-response fuzzer only waits on it. tests/e2e/test_stream.py checks its errors (401, a malformed
Last-Event-ID) instead."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from live import Deployment, deploy

from fanout.settings import Settings

pytestmark = pytest.mark.e2e

FUZZER = Path(sys.executable).with_name("schemathesis")
USER = 4_242  # the token's user; not a boundary value the fuzzer tries on its own (1, 2^53 - 1, ...)


@pytest.fixture(scope="module")
def live(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    # No rate limits here: the fuzzer is one user sending thousands of requests, and a 429 for valid input
    # would fail its positive-data check. tests/e2e/test_security.py tests the limits.
    with deploy(stack, tmp_path_factory.mktemp("logs"), "fuzz", rate_limit_writes="", rate_limit_streams="",
                rate_limit_unauthenticated="") as d:
        yield d


@pytest.mark.parametrize("service", ["read-api", "ingest-api"])
def test_schemathesis_finds_nothing(live: Deployment, service: str, tmp_path: Path) -> None:
    command = [str(FUZZER), "run", f"{live.processes.url(service)}/openapi.json", "--checks", "all",
               "-H", f"Authorization: {live.tokens.headers(USER)['Authorization']}",
               "--max-examples", "100", "--request-timeout", "30", "--generation-database", "none",
               "--no-color", "--output-sanitize", "true", "--exclude-operation-id", "feed_stream"]
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    summary = run.stdout[run.stdout.find("SUMMARY"):]
    print(f"schemathesis against the {service}:\n{summary}")
    assert run.returncode == 0, run.stdout[-20_000:] + run.stderr[-5_000:]
    assert re.search(r"Tested: [1-9]", summary) and re.search(r"\d+ generated, \d+ passed", summary), summary
    if service == "ingest-api":
        assert "✅ Stateful" in summary, summary
    live.processes.check_alive()

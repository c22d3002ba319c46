"""`fanout up`: the whole pipeline in the foreground, on a running stack. `fanout migrate` once, then the
worker(s), the notifier, the read API and the ingest API, supervised by deploy/supervisor.py: output prefixed with each
process's name, a process that exits restarted with backoff, all stopped on Ctrl-C or SIGTERM. Once both APIs
answer, it prints the feed page signed in as each demo user, to watch one user's post arrive in the other's feed."""

from __future__ import annotations

import os
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence

from deploy.supervisor import Program, Supervisor
from fanout.api.auth import mint_token
from fanout.read.page import page_url
from fanout.settings import Settings

DEMO_USERS = (1, 2)
# A page cannot renew its own token, and a demo runs for a working day: 12 hours, not the hour of
# FANOUT_TOKEN_TTL_SECONDS, before the page asks for a new one.
DEMO_TOKEN_TTL_SECONDS = 12 * 3600


def programs(settings: Settings, workers: int = 1) -> tuple[Program, list[Program]]:
    """The migration to run first, then the long-lived processes: workers 1..N (worker i has metrics on
    FANOUT_WORKER_METRICS_PORT + i - 1), the notifier, the read API and the ingest API, all with these settings."""
    env = {**os.environ, **settings.to_env()}
    fanout = [sys.executable, "-m", "services.cli"]
    host = settings.client_host
    migrate = Program("migrate", [*fanout, "migrate"], env)
    long_lived = [
        Program(f"worker-{i + 1}", [*fanout, "worker"],
                {**env, "FANOUT_WORKER_METRICS_PORT": str(settings.worker_metrics_port + i)},
                ready_url=f"http://{host}:{settings.worker_metrics_port + i}/metrics")
        for i in range(workers)
    ]
    long_lived += [
        Program("notifier", [*fanout, "notifier"], env,
                ready_url=f"http://{host}:{settings.notifier_metrics_port}/metrics"),
        Program("read-api", [*fanout, "read-api"], env, ready_url=f"http://{host}:{settings.read_api_port}/healthz"),
        Program("ingest-api", [*fanout, "ingest-api"], env,
                ready_url=f"http://{host}:{settings.ingest_api_port}/healthz"),
    ]
    return migrate, long_lived


def run(settings: Settings, workers: int = 1, stop_timeout: float = 20.0) -> int:
    """Supervise the pipeline until SIGINT or SIGTERM; the exit code for the shell (0 after a stop)."""
    migrate, long_lived = programs(settings, workers)
    supervisor = Supervisor(long_lived, before=[migrate], stop_timeout=stop_timeout)
    apis = [p.ready_url for p in long_lived if p.name in ("read-api", "ingest-api") and p.ready_url]
    # A daemon: it dies with the supervisor, whether or not the APIs ever answered.
    threading.Thread(target=announce_pages, args=(settings, apis, supervisor.say), daemon=True).start()
    return supervisor.run()


def announce_pages(settings: Settings, ready_urls: Sequence[str], say: Callable[[str], None],
                   poll_s: float = 0.5) -> None:
    """Once every one of `ready_urls` answers 200, say the page URL signed in as each demo user."""
    waiting = list(ready_urls)
    while waiting:
        waiting = [url for url in waiting if not _answers(url)]
        if waiting:
            time.sleep(poll_s)
    try:
        links = [(user, page_url(settings, mint_token(settings, user, DEMO_TOKEN_TTL_SECONDS))) for user in DEMO_USERS]
    except (ValueError, OSError) as exc:  # e.g. RS256 without a private key: tokens come from elsewhere
        say(f"no signed-in page links: {exc}")
        return
    say(f"the live feed, signed in (tokens valid {DEMO_TOKEN_TTL_SECONDS // 3600} h; "
        "`.venv/bin/fanout token USER_ID --url` for another user):")
    for user, url in links:
        say(f"user {user}: {url}")


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False

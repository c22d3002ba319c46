"""`fanout bench compose`: the same write burst and reads on `fanout stack up`'s processes and on the compose
deployment (1 node, then 3), in one run on one machine.

Each target gets AUTHOR with `followers` followers (follow events, drained), then:
- a burst of `posts` posts by AUTHOR, published at once: inbox rows per second until the worker group's lag
  is 0 (one worker on every target);
- reads of the followers' feeds through the read API, judged by wrk (Debian): reads/s and p99.
The stack's processes run on the local stack (`fanout stack up`, whatever its size); the compose
projects are brought up with the images `fanout compose init` chooses and taken down after.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from bench import loadgen
from bench.scenario import scenario_settings, scenarios_dropped
from deploy import compose
from deploy.processes import ProcessGroup
from fanout.api.auth import Tokens
from fanout.core.events import Followed
from fanout.lag import wait_until_drained
from fanout.settings import Settings
from fanout.write.producer import EventProducer

AUTHOR = 90_000
FOLLOWER_BASE = 100_000
# The compose projects' host ports: the defaults (kafka, kafka-2, kafka-3, cassandra, read, ingest,
# prometheus) moved up by 20,000, beside the local stack on the defaults.
PORTS = [9092 + 20_000, 9192 + 20_000, 9292 + 20_000, 9042 + 20_000, 8080 + 20_000, 8081 + 20_000, 9090 + 20_000]
console = Console(stderr=True)


def measure(s: Settings, read_url: str, followers: int, posts: int, seconds: float, connections: int) -> dict[str, Any]:
    """The burst and the reads on one target whose worker and read API are running."""
    config: dict[str, Any] = {"message.timeout.ms": 300_000}
    producer = EventProducer(s, **config)
    try:
        fans = range(FOLLOWER_BASE, FOLLOWER_BASE + followers)
        follows = [Followed(event_time=1_790_000_000_000 + i, follower_id=f, followee_id=AUTHOR)
                   for i, f in enumerate(fans)]
        for future in [producer.send(e) for e in follows]:
            future.result(60)
        wait_until_drained(s, timeout=900)
        started = time.monotonic()
        events = [producer.new_post(AUTHOR, f"burst post {i}") for i in range(posts)]
        for future in [producer.send(e) for e in events]:
            future.result(60)
        wait_until_drained(s, timeout=900, poll=0.1)
        burst = time.monotonic() - started
    finally:
        producer.close()
    tokens = Tokens(s)
    readers = list(fans)[:2000]
    reads = loadgen.wrk([(f"{read_url}/v1/feed?limit=20", tokens.headers(r)) for r in readers], connections, seconds)
    return {"followers": followers, "posts": posts, "rows": followers * posts, "burst_seconds": round(burst, 2),
            "rows_per_s": round(followers * posts / burst), "reads": reads}


def on_stack(base: Settings, log_dir: Path, **options: Any) -> dict[str, Any]:
    s = scenario_settings(base, "compose-stack")
    with ProcessGroup(s, log_dir / "stack").start("worker", "read-api", timeout=180) as processes:
        return measure(s, processes.url("read-api"), **options)


def on_compose(base: Settings, nodes: int, **options: Any) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        project = compose.project(base, f"fanout-bench-{nodes}n", Path(tmp), nodes, "auto", PORTS, console.log)
        project.down()
        try:
            started = time.monotonic()
            project.up()
            up_seconds = time.monotonic() - started
            project.copy_token_secret(Path(tmp) / "jwt.secret")
            s = project.host_settings(Path(tmp) / "jwt.secret")
            result = measure(s, f"http://127.0.0.1:{s.read_api_port}", **options)
            return {**result, "up_seconds": round(up_seconds, 1)}
        finally:
            project.down()


def run(base: Settings, nodes: list[int], out: Path, **options: Any) -> list[dict[str, Any]]:
    """Every target, one after the other; bench.json, a table and a plot in `out`."""
    loadgen.wrk_binary()
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    with scenarios_dropped():
        console.log(f"fanout stack up's processes ({base.stack.nodes} node(s))")
        rows.append({"target": f"stack, {base.stack.nodes} node(s)", **on_stack(base, out / "logs", **options)})
    for n in nodes:
        console.log(f"docker compose, {n} node(s)")
        rows.append({"target": f"compose, {n} node(s)", **on_compose(base, n, **options)})
    (out / "bench.json").write_text(json.dumps({"command": "fanout bench compose", "results": rows}, indent=2))
    (out / "bench.md").write_text(table(rows))
    plot(rows, out / "compose.png")
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| target | inbox rows/s (burst) | reads/s (wrk) | read p50 ms | read p99 ms | up s |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['target']} | {r['rows_per_s']:,} | {r['reads']['reads_per_s']:,} | "
                     f"{r['reads']['p50_ms']} | {r['reads']['p99_ms']} | {r.get('up_seconds', '-')} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["target"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.bar(names, [r["rows_per_s"] for r in rows], color="tab:blue")
    left.set_title("fan-out burst: inbox rows/s")
    right.bar(names, [r["reads"]["p99_ms"] or 0 for r in rows], color="tab:orange")
    right.set_title("reads under wrk: p99 ms")
    for ax in (left, right):
        ax.tick_params(axis="x", labelrotation=20)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

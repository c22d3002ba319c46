"""Fan-out throughput of a stack of its own, 1 node or a 3-node cluster: 20 posts of an author with 10,000
followers through 2 workers, inbox rows per second from the first post's acceptance until the group has
drained, checked against the oracle. Also the stack's start time and the RSS of every server.

    flock /tmp/fanout-bench.lock .venv/bin/python tests/faults/fanout_rate.py --nodes 3
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cluster import own_stack  # noqa: E402
from rig import AUTHOR, FOLLOWERS, rig  # noqa: E402

from deploy import stack as launcher  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=1)
    ap.add_argument("--posts", type=int, default=20)
    ap.add_argument("--cassandra-heap", default="512M")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="fanout-rate-") as tmp:
        started = time.monotonic()
        with own_stack(Path(tmp) / "state", nodes=args.nodes, cassandra_heap=args.cassandra_heap,
                       kafka_heap="384m") as s:
            start_seconds = time.monotonic() - started
            rss = {st.name: round(launcher.resident_memory_mb(st.pid)) for st in launcher.status(s) if st.pid}
            with rig(s, Path(tmp) / "logs", "rate") as r:
                r.follow([(f, AUTHOR) for f in FOLLOWERS])
                seed_seconds = r.drain(timeout=1800)
                t0 = time.monotonic()
                r.post(AUTHOR, args.posts)
                r.drain()
                seconds = time.monotonic() - t0
                outcome = r.compare(f"fan-out rate, {args.nodes} node(s)", 0, seconds, " ".join(sys.argv))
                rss_after = {st.name: round(launcher.resident_memory_mb(st.pid))
                             for st in launcher.status(s) if st.pid}
    rows = args.posts * len(FOLLOWERS)
    print(json.dumps({"nodes": args.nodes, "start_seconds": round(start_seconds, 1),
                      "rss_mib_idle": rss, "rss_mib_after": rss_after,
                      "follows_per_second": round(len(FOLLOWERS) / seed_seconds),
                      "inbox_rows": rows, "seconds": round(seconds, 1), "rows_per_second": round(rows / seconds),
                      "missing": outcome.missing, "extra": outcome.extra}, indent=1))


if __name__ == "__main__":
    main()

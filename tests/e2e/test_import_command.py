"""`fanout import follows FILE` as a user runs it, on the real stack: the command in its own process, its
authors split over two processes, writing in batches of `FANOUT_IMPORT_BATCH_ROWS` rows. The contract test
(tests/contract/test_graph_import.py) proves the state equals the follow handler's; this one proves the
command delivers all of it: every edge, count and followers' side row, with batches that fill."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from fanout.adapters.cassandra import connect, migrate
from fanout.settings import Settings

pytestmark = pytest.mark.e2e

AUTHORS = range(1, 41)  # author a has 5a followers: 4,100 edges, up to 200 per author, 40 per follower


def test_the_import_command_writes_every_edge_count_and_following_row(stack: Settings, unique: str,
                                                                      tmp_path: Path) -> None:
    s = stack.isolated(f"import_cli_{unique}", import_batch_rows=300)
    migrate(s)
    edges = [(1_000 + i, a) for a in AUTHORS for i in range(5 * a)]
    path = tmp_path / "follows.csv"
    path.write_text("follower_id,followee_id\n" + "".join(f"{f},{a}\n" for f, a in edges))
    cluster, session = connect(s, s.keyspace)
    try:
        done = subprocess.run([sys.executable, "-m", "services.cli", "import", "follows", str(path), "--jobs", "2"],
                              env={**os.environ, **s.to_env()}, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        assert f"imported {len(edges):,} follows" in done.stdout + done.stderr

        rows = list(session.execute("SELECT author_id, follower_id, following, follower_count "
                                    "FROM followers_by_author"))
        assert {(r.follower_id, r.author_id) for r in rows if r.following} == set(edges)
        counts = {r.author_id: r.follower_count for r in rows}
        assert counts == dict(Counter(a for _, a in edges))
        followings = {(r.user_id, r.followee_id) for r in session.execute(
            "SELECT user_id, followee_id, following FROM following_by_user") if r.following}
        assert followings == set(edges)
    finally:
        session.execute(f"DROP KEYSPACE IF EXISTS {s.keyspace}", timeout=120)
        cluster.shutdown()

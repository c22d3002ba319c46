"""`fanout demo` tidies up after itself: a second run drops the first run's keyspace, topics and consumer
groups, and the commands it prints to look at its data (cqlsh and kcat, logged in from the credentials file)
work as pasted in a clean shell, without a password ever in its output."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from bench.demo import DEMO, drop_previous_demos
from deploy import credentials
from fanout.adapters.cassandra.session import connect
from fanout.settings import Settings

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


def demo(tmp_path: Path) -> str:
    run = subprocess.run([sys.executable, "-m", "services.cli", "demo", "--users", "200", "--posts", "60",
                          "--threshold", "20"], cwd=REPO, capture_output=True, text=True, timeout=600,
                         env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "COLUMNS": "400"})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run.stdout


def on_stack(s: Settings) -> tuple[set[str], set[str], set[str]]:
    """What is on the stack, listed here without bench.demo, so that a wrong prefix there would not hide here."""
    cluster, session = connect(s)
    try:
        keyspaces = {r.keyspace_name for r in session.execute("SELECT keyspace_name FROM system_schema.keyspaces")}
    finally:
        cluster.shutdown()
    admin = AdminClient(s.kafka_config("admin"))
    topics = set(admin.list_topics(timeout=30).topics)
    groups = {g.group_id for g in admin.list_consumer_groups().result(30).valid}
    return ({k for k in keyspaces if k.startswith("demo_")}, {t for t in topics if t.startswith(DEMO)},
            {g for g in groups if g.startswith(DEMO)})


def test_a_demo_drops_the_last_ones_data_and_shows_how_to_look_at_its_own(stack: Settings, tmp_path: Path) -> None:
    first = demo(tmp_path)
    first_keyspace = re.search(r"keyspace (demo_\d+)", first)
    assert first_keyspace, first[-2000:]
    assert first_keyspace.group(1) in on_stack(stack)[0]
    second = demo(tmp_path)
    try:
        keyspace = re.search(r"keyspace (demo_\d+)", second)
        assert keyspace and keyspace.group(1) != first_keyspace.group(1)
        name = keyspace.group(1).replace("_", "-")
        assert f"dropped the earlier demos' keyspaces ({first_keyspace.group(1)})" in second
        keyspaces, topics, groups = on_stack(stack)
        assert keyspaces == {keyspace.group(1)}
        assert topics and all(t.startswith(f"{name}.") or t.startswith(f"{name}-") for t in topics)
        assert all(g.startswith(name) for g in groups)
        for password in (v for k, v in credentials.read(stack).items() if k.endswith("password")):
            assert password not in second
        # The printed commands, pasted into a clean shell in the repository.
        lines = second[second.index("Look at them from the repository's root:"):].splitlines()[1:]
        commands = [line.strip() for line in lines if line.startswith("  ")]
        assert [c.split()[0] for c in commands] == ["set", ".venv/bin/cqlsh", "kcat"]
        looked = subprocess.run(["/usr/bin/env", "-i", f"HOME={tmp_path}", "PATH=/usr/bin:/bin", "bash", "-euo",
                                 "pipefail", "-c", "\n".join(commands)], cwd=REPO, capture_output=True, text=True,
                                timeout=120)
        assert looked.returncode == 0, looked.stderr
        assert "(5 rows)" in looked.stdout  # cqlsh's five inbox rows
        assert looked.stdout.count('"type":') >= 5  # kcat's five author events
    finally:
        drop_previous_demos(stack)
    assert on_stack(stack)[0] == set()

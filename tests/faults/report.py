"""docs/faults.md, written from the fault suites' own report: every fault test of `make test-faults` and
`make test-docker` appends its figures to .fanout/faults-report.jsonl (tests/faults/rig.py `Outcome`).

    .venv/bin/python tests/faults/report.py > docs/faults.md

Each suite is shown, per cluster size, as its latest run.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

REPORT = Path(__file__).resolve().parents[2] / ".fanout" / "faults-report.jsonl"
GAP = timedelta(hours=1)

INTRO = """# Faults: what was killed, and what was lost

Written by `tests/faults/report.py` from the fault suites' own report; every figure below is a record of
it. Regenerate after a run: `.venv/bin/python tests/faults/report.py > docs/faults.md`.

`make test-faults` (tests/faults/) runs each fault on real servers, on a stack of its own (a temp state dir,
free ports, the shared jar cache: it never touches the stack `make test` uses), with the project's own
worker processes, and checks the **whole inbox table** against an oracle of every expected row by set
equality: "missing" rows were acknowledged and are not there, "extra" rows are there and should not be.
First on one node, then on a 3-broker, 3-node cluster (RF 3, min.insync.replicas 2, LOCAL_QUORUM). The big
fan-out tests share one keyspace where one author has 10,000 followers (seeded through the pipeline); each
posts 20 more times and checks everything written so far, so "expected" grows from test to test. "Drain" is
the time from recovery (the server or worker back, the fault over) until the worker group had no lag.

`make test-docker` (tests/docker/) brings docker-compose.yml up as a compose project of its own, reaches it
only through the ports it publishes on 127.0.0.1, and kills containers with `docker kill` while the worker
group is behind on a fan-out (the lag at the kill is recorded; the test fails if it was 0). There "drain"
runs from the kill, the container's restart included.

A worker that exits fails a test at once: through an outage the workers wait and retry, and nothing is
parked but the poisoned event of its own test. One test: `make test-faults FAULT_NODES=1
PYTEST_ARGS='-k <name>'`."""


def suite(record: dict[str, Any]) -> str:
    return "make test-docker" if "test-docker" in record["command"] else "make test-faults"


def runs(records: list[dict[str, Any]]) -> dict[tuple[str, int], list[dict[str, Any]]]:
    """The latest run of each suite on each cluster size: its records appended one after the other, on one
    commit, without an hour's gap."""
    latest: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in records:
        key = (suite(r), r["nodes"])
        block = latest.get(key)
        at = datetime.fromisoformat(r["at"])
        if block and block[-1].get("commit") == r.get("commit") and at - datetime.fromisoformat(block[-1]["at"]) < GAP:
            block.append(r)
        else:
            latest[key] = [r]
    return latest


def _notes(notes: dict[str, Any]) -> str:
    return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in notes.items())


def _one_test(record: dict[str, Any]) -> str:
    """The command that runs this fault alone, on the cluster size it ran on."""
    command = record["command"]
    if suite(record) == "make test-faults" and "FAULT_NODES" not in command:
        command = command.replace("make test-faults", f"make test-faults FAULT_NODES={record['nodes']}")
    return f"`{command}`"


def markdown(records: list[dict[str, Any]]) -> str:
    lines = [INTRO, ""]
    faults_first = sorted(runs(records).items(), key=lambda kv: (kv[0][0] != "make test-faults", kv[0][1]))
    for (name, nodes), block in faults_first:
        first, last = block[0], block[-1]
        commit = f"commit `{first['commit']}`, " if first.get("commit") else ""
        missing = sum(r["missing"] for r in block)
        extra = sum(r["extra"] for r in block)
        lines += [f"## `{name}`, {nodes} node{'s' if nodes > 1 else ''}", "",
                  f"{commit}{first['at']} to {last['at'][11:]}: {len(block)} faults, "
                  f"{sum(r['expected'] for r in block):,} rows checked, **{missing} missing, {extra} extra**.", "",
                  "| fault | times | rows expected | missing | extra | drain | notes | alone |",
                  "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['fault']} | {r['times']} | {r['expected']:,} | {r['missing']} | {r['extra']} | "
                  f"{r['drain_seconds']} s | {_notes(r.get('notes', {}))} | {_one_test(r)} |" for r in block]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    records = [json.loads(line) for line in REPORT.read_text().splitlines() if line.strip()]
    sys.stdout.write(markdown(records))


if __name__ == "__main__":
    main()

"""`fanout bench all`: every benchmark of the running stack, one after the other, then BENCHMARKS.md.

Each part runs as its own `fanout bench ...` process (its keyspaces, topics and processes come and go with
it) and writes its report into a folder of the output; all.json records the commit, the machine, and each
part's command and duration; bench/summary.py turns the lot into BENCHMARKS.md with the targets computed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from bench import summary
from bench.stats import machine

# Each part's `fanout bench` arguments, at the documented size and at --quick size (a check, not figures).
PARTS: dict[str, tuple[list[str], list[str]]] = {
    "retries": (["retries"], ["retries", "--calls", "20000"]),
    "handlers": (["handlers"], ["handlers", "--follows", "3000", "--posts", "1000", "--rounds", "1"]),
    # 300,000 edges measure the import's rate as well as a million, in a third of the time.
    "write": (["--import-edges", "300000"], ["--quick"]),
    "reads": (["reads"], ["reads", "--quick"]),
    "stream": (["stream"], ["stream", "--readers", "100", "--authors", "50", "--seconds", "8"]),
    "notifications": (["notifications"], ["notifications", "--rate", "50", "--seconds", "5", "--followers", "2000",
                                          "--burst-posts", "100", "--flood", "2000", "--hot", "200"]),
    "abuse": (["abuse"], ["abuse", "--readers", "60", "--authors", "10", "--seconds", "8", "--streams", "50",
                          "--rounds", "1"]),
}


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout.strip()


def run(out: Path, markdown_path: Path, quick: bool, command: str, console: Console,
        only: list[str] | None = None) -> dict[str, Any]:
    """Run every part (or those in `only`, keeping the others' records of an earlier run) into `out`, then
    write all.json there (after each part) and the summary to `markdown_path`."""
    out.mkdir(parents=True, exist_ok=True)
    unknown = set(only or ()) - PARTS.keys()
    if unknown:
        raise ValueError(f"no such part: {sorted(unknown)}; the parts are {list(PARTS)}")
    commit = _git("rev-parse", "--short", "HEAD")
    # Changes to the code, not to the reports this command writes.
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no", "--", ".", f":!{out}", f":!{markdown_path}"))
    previous = json.loads((out / "all.json").read_text()) if only and (out / "all.json").exists() else {}
    # A run of some parts keeps the run it completes as it was (its command, commit and start); each part
    # records its own command, commit and duration.
    manifest: dict[str, Any] = previous or {
        "command": command, "commit": commit, "dirty": dirty,
        "started": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine(), "parts": {},
    }
    chosen = {part: args for part, args in PARTS.items() if not only or part in only}
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} parts"),
               TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("fanout bench all", total=len(chosen))
        for part, (full, small) in chosen.items():
            args = [*(small if quick else full), "--out", str(out / part)]
            progress.update(task, description=f"fanout bench {' '.join(args)}")
            part_started = time.monotonic()
            log = out / f"{part}.log"
            with log.open("w") as stream:
                done = subprocess.run([sys.executable, "-m", "services.cli", "bench", *args], stdout=stream,
                                      stderr=subprocess.STDOUT, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"fanout bench {' '.join(args)} failed (exit {done.returncode}); see {log}")
            manifest["parts"][part] = {"command": "fanout bench " + " ".join(args), "commit": commit, "dirty": dirty,
                                       "seconds": round(time.monotonic() - part_started, 1)}
            manifest["seconds"] = round(sum(p["seconds"] for p in manifest["parts"].values()), 1)
            (out / "all.json").write_text(json.dumps(manifest, indent=2))  # a later part's failure keeps it
            progress.advance(task)
    markdown_path.write_text(summary.markdown(out, markdown_path.resolve().parent))
    return manifest

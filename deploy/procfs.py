"""What /proc says about a pid: its command line and state, whether it is gone, how much memory it holds."""

from __future__ import annotations

import os
import time
from pathlib import Path

GONE = (None, "Z", "X")  # process states of a pid that runs nothing any more


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").strip("\0")
    except OSError:
        return ""


def stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat from the state field on (the command name before it may contain spaces)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def proc_state(pid: int) -> str | None:
    fields = stat_fields(pid)
    return fields[0] if fields else None


def is_kernel_thread(pid: int) -> bool:
    fields = stat_fields(pid)
    return fields is not None and len(fields) > 6 and int(fields[6]) & 0x00200000 != 0  # PF_KTHREAD


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        reap(pid)
        if proc_state(pid) in GONE:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)


def reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def resident_memory_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0

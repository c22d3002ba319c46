"""The numbers every benchmark reports the same way: quantiles of latency samples and of the worker's
Prometheus histograms, and a description of the machine they were measured on."""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def percentile(ascending: Sequence[float], q: float) -> float:
    """The q-quantile of sorted values by nearest rank (the value below which a share q of them lie)."""
    return ascending[min(len(ascending) - 1, int(len(ascending) * q))]


def _buckets(samples: dict[str, float], before: dict[str, float], name: str) -> list[tuple[float, float]]:
    """(upper bound, cumulative count) of a histogram's buckets, counting only observations since `before`."""
    buckets = []
    for key, value in samples.items():
        if key.startswith(name + "_bucket{"):
            bound = key.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float(bound), value - before.get(key, 0.0)))  # float("+Inf") is inf
    return sorted(buckets)


def histogram_quantile(samples: dict[str, float], before: dict[str, float], name: str, q: float) -> float:
    """Prometheus-style quantile (linear within a bucket) of the observations between two scrapes."""
    buckets = _buckets(samples, before, name)
    total = buckets[-1][1] if buckets else 0
    if total <= 0:
        return float("nan")
    rank, prev_le, prev_count = q * total, 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * (rank - prev_count) / max(count - prev_count, 1e-12)
        prev_le, prev_count = le, count
    return prev_le


def histograms_by(scraped: Mapping[str, float], name: str, label: str | None) -> dict[str, dict[str, float]]:
    """The buckets of Prometheus histogram `name` as scraped, one histogram per value of `label` (None: every
    series summed into one, keyed ""), each keyed as `histogram_quantile` reads them."""
    prefix = name + "_bucket{"
    by: dict[str, dict[str, float]] = {}
    for key, value in scraped.items():
        if key.startswith(prefix):
            labels = dict(part.split("=", 1) for part in key[len(prefix):-1].split(","))
            bucket = by.setdefault(labels[label].strip('"') if label else "", {})
            le = f'{prefix}le={labels["le"]}}}'
            bucket[le] = bucket.get(le, 0.0) + value
    return by


def highest_bucket(samples: dict[str, float], before: dict[str, float], name: str) -> float:
    """Upper bound of the highest non-empty bucket between two scrapes: the maximum, to the bucket's
    resolution."""
    highest, prev = 0.0, 0.0
    for le, count in _buckets(samples, before, name):
        if count > prev:
            highest = le
        prev = count
    return highest


def cpu_seconds(pid: int | Sequence[int]) -> float:
    """User + system CPU time of a process so far (/proc/<pid>/stat); of several together (a cluster's nodes)."""
    if not isinstance(pid, int):
        return sum(cpu_seconds(p) for p in pid)
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0  # utime, stime in clock ticks (USER_HZ = 100)


class CpuMeter:
    """CPU seconds each named process (or group of processes) spends from now until `spent()`."""

    def __init__(self, pids: Mapping[str, int | Sequence[int] | None]) -> None:
        self.pids = {name: pid for name, pid in pids.items() if pid}
        self.start = {name: cpu_seconds(pid) for name, pid in self.pids.items()}

    def spent(self) -> dict[str, float]:
        return {name: round(cpu_seconds(pid) - self.start[name], 2) for name, pid in self.pids.items()}


def per_1000(cpu: dict[str, float], deliveries: float) -> dict[str, float]:
    """CPU seconds per 1,000 deliveries (inbox rows, or follow events), by process."""
    return {name: round(seconds / (deliveries / 1000), 4) for name, seconds in cpu.items()} if deliveries else {}


def machine() -> dict[str, Any]:
    """CPU model, cores, memory and Python version of this machine (Linux /proc)."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem_kb = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal")))
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem_kb / 2**20, 1),
            "python": platform.python_version()}

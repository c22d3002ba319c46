"""Outside HTTP load generators, so the read service is judged by tools we did not write.

- wrk (Debian's package): the most reads per second a fixed number of connections gets (closed loop), with
  a Lua script that picks a random reader per request.
- vegeta (github.com/tsenart/vegeta, from the Go module proxy): latency at a fixed offered rate (open loop:
  requests start on schedule whether or not earlier ones finished, so queueing shows in the percentiles),
  over a shuffled list of readers. Debian's `hey -q` takes a single URL, which would read one user's
  cached feed over and over.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deploy.servers import project_path
from fanout.settings import Settings

VEGETA = "github.com/tsenart/vegeta/v12@v12.13.0"
Target = tuple[str, dict[str, str]]  # a URL and its request headers


class LoadgenError(RuntimeError):
    pass


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise LoadgenError("wrk is not installed (Debian: apt-get install wrk; .ci/run installs it)")
    return found


def vegeta_binary(settings: Settings) -> str:
    """vegeta from PATH, or built once from the Go module proxy into the launcher's cache."""
    found = shutil.which("vegeta")
    if found:
        return found
    bin_dir = project_path(settings.stack.cache_dir) / "bin"
    binary = bin_dir / "vegeta"
    if binary.exists():
        return str(binary)
    go = shutil.which("go")
    if go is None:
        raise LoadgenError("vegeta is not installed and Go is not there to build it (go install " + VEGETA + ")")
    bin_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([go, "install", VEGETA], env={**os.environ, "GOBIN": str(bin_dir)}, capture_output=True,
                          text=True)
    if proc.returncode != 0 or not binary.exists():
        raise LoadgenError(f"go install {VEGETA} failed:\n{proc.stderr[-2000:]}")
    return str(binary)


def wrk(targets: Sequence[Target], connections: int, seconds: float, threads: int = 2) -> dict[str, Any]:
    """Peak throughput: reads/s and latency percentiles from wrk --latency."""
    base = re.match(r"(https?://[^/]+)", targets[0][0])
    assert base is not None
    lines = [f'  {{"{url[len(base.group(1)):]}", {{{_lua_headers(headers)}}}}},' for url, headers in targets]
    script = ("math.randomseed(os.time())\nlocal t = {\n" + "\n".join(lines) + "\n}\n"
              "request = function()\n  local r = t[math.random(#t)]\n"
              "  return wrk.format('GET', r[1], r[2])\nend\n")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    try:
        out = subprocess.run([wrk_binary(), f"-t{threads}", f"-c{connections}", f"-d{seconds:.0f}s", "--latency",
                              "-s", f.name, base.group(1)], capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(f.name)
    percentiles = {m.group(1): _ms(m.group(2)) for m in re.finditer(r"^\s+(50|75|90|99)%\s+([\d.]+\w+)", out, re.M)}
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return {"connections": connections, "seconds": seconds, "reads_per_s": round(float(rate.group(1)) if rate else 0),
            "p50_ms": percentiles.get("50"), "p90_ms": percentiles.get("90"), "p99_ms": percentiles.get("99"),
            "errors": int(errors.group(1)) if errors else 0, "tool": "wrk"}


def vegeta(binary: str, targets: Sequence[Target], rate: float, seconds: float) -> dict[str, Any]:
    """Latency at a fixed offered rate over the targets (round robin over a shuffled list)."""
    text = "\n\n".join(f"GET {url}" + "".join(f"\n{k}: {v}" for k, v in headers.items()) for url, headers in targets)
    with tempfile.TemporaryDirectory() as tmp:
        target_file = Path(tmp) / "targets.txt"
        target_file.write_text(text + "\n")
        attack = subprocess.run([binary, "attack", f"-targets={target_file}", f"-rate={rate:.0f}/1s",
                                 f"-duration={seconds:.0f}s", "-max-workers=256", "-timeout=10s"],
                                capture_output=True, check=True)
        report = subprocess.run([binary, "report", "-type=json"], input=attack.stdout, capture_output=True,
                                check=True)
    r = json.loads(report.stdout)
    lat = r["latencies"]
    return {"offered_per_s": rate, "achieved_per_s": round(r["throughput"], 1), "requests": r["requests"],
            "success": r["success"], "p50_ms": lat["50th"] / 1e6, "p90_ms": lat["90th"] / 1e6,
            "p99_ms": lat["99th"] / 1e6, "max_ms": lat["max"] / 1e6, "tool": "vegeta"}


def _lua_headers(headers: dict[str, str]) -> str:
    return ", ".join(f'["{k}"] = "{v}"' for k, v in headers.items())


def _ms(value: str) -> float:
    number, unit = re.match(r"([\d.]+)(\w+)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]

"""Free ports for servers and processes the tests start on ports of their own.

A port the kernel hands out for `bind(0)` lies in its ephemeral range, the one it also gives client sockets:
between the check and the server's own bind, a driver's or a broker's outgoing connection may take it (a
fault run once lost a worker to "Address already in use" that way). So the ports come from below that
range, where only a listener asks for a port by number.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

SPAN = 4  # each port reserves the 3 above it too: worker-N serves on worker_metrics_port + N - 1
LOWEST = 10_000  # above every default port of the stack (9042, 9092, 9093, 9090, 8080, 8081, 7000, 6066)


def ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (32768 unless configured otherwise)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def _free(port: int) -> bool:
    """Nothing listens on or holds `port` on any local address (a wildcard bind fails if one does)."""
    with socket.socket() as sock:
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def free_ports(n: int) -> list[int]:
    """`n` ports free on every local address, each with the SPAN - 1 ports above it, none of the blocks
    overlapping, all below the ephemeral range."""
    top = ephemeral_low() - SPAN
    picked: list[int] = []
    for _ in range(n * 200):
        port = random.randrange(LOWEST, top)
        if all(abs(port - other) >= SPAN for other in picked) and all(_free(p) for p in range(port, port + SPAN)):
            picked.append(port)
            if len(picked) == n:
                return picked
    raise RuntimeError(f"found only {len(picked)} of {n} free port blocks in {LOWEST}-{top + SPAN}")


def free_port() -> int:
    return free_ports(1)[0]

"""The test ports come from below the kernel's ephemeral range, in blocks that do not overlap."""

from __future__ import annotations

import socket

import ports


def test_ports_lie_below_the_ephemeral_range_in_free_blocks_that_do_not_overlap() -> None:
    picked = ports.free_ports(8)
    assert len(picked) == 8
    for port in picked:
        assert ports.LOWEST <= port and port + ports.SPAN <= ports.ephemeral_low()
        assert [p for p in range(port, port + ports.SPAN) if not ports._free(p)] == []
    starts = sorted(picked)
    assert all(b - a >= ports.SPAN for a, b in zip(starts, starts[1:], strict=False))


def test_a_port_held_by_a_listener_is_not_free() -> None:
    port = ports.free_port()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port + 1))
        holder.listen()
        assert not ports._free(port + 1)
    assert ports._free(port + 1)

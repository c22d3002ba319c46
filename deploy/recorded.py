"""What a state dir records about the stack it holds, and the settings of that stack for any command.

`fanout stack up --nodes 3` records the node count (STATE_DIR/nodes) and, with credentials, writes them
(STATE_DIR/credentials.env, deploy/credentials.py); every later command finds both through `on_stack`.
"""

from __future__ import annotations

import dataclasses
import os

from deploy import credentials
from deploy.servers import project_path
from fanout.settings import Settings


def recorded_nodes(s: Settings) -> int | None:
    """How many nodes the stack in this state dir was started with (None: never started)."""
    try:
        return int((project_path(s.stack.state_dir) / "nodes").read_text())
    except (FileNotFoundError, ValueError):
        return None


def on_stack(s: Settings, nodes: int | None = None) -> Settings:
    """`s` for the stack in its state dir: `nodes` if given, else FANOUT_NODES if set, else the node count
    that stack was started with, so `fanout up`, `migrate` and `status` find a cluster started with
    `fanout stack up --nodes 3` without more settings; and the stack's credentials where `s` has none."""
    if nodes is None and "FANOUT_NODES" not in os.environ:
        nodes = recorded_nodes(s)
    s = credentials.fill(s)
    return s if nodes is None else dataclasses.replace(s, stack=dataclasses.replace(s.stack, nodes=nodes))

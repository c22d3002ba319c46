"""The local stack's credentials: generated once per state dir, found by every command.

With FANOUT_STACK_AUTH (the default), the first `fanout stack up` of a state dir writes
STATE_DIR/credentials.env (mode 0600; .fanout/ is git-ignored): a Kafka super user for the launcher and
`fanout migrate` (`admin`), the services' Kafka user (`fanout`: ingest, publish), the read service's
(`fanout-reader`), the worker's (`fanout-worker`), a Cassandra superuser (`admin`), the project's Cassandra
role (`fanout`, owns the schema) and one role per process (`fanout_worker`, `fanout_ingest`,
`fanout_reader`: only what each needs, granted by `fanout migrate`), each with 144 random bits for a
password. A FANOUT_* credential set at that moment is taken instead of a generated one. Every command then
fills in the credentials it was not given from that file (`fill`, called by `deploy.stack.on_stack`), so
`make demo`, `make run` and `make test` need no settings. The file holds plain FANOUT_NAME=value lines:
`set -a; . .fanout/state/credentials.env` gives a shell the same (kcat, cqlsh).

The file's existence is the stack's mode (`deploy.stack.requires_credentials`): servers created without it
hold no users, so that state dir stays without credentials until `fanout stack down --wipe` (and one
created with it keeps them).
"""

from __future__ import annotations

import dataclasses
import os
import re
import secrets
from pathlib import Path
from typing import Any

from fanout.settings import Settings, project_path

FILE = "credentials.env"
# Each credential (the settings <prefix>_username and <prefix>_password) with the user a new stack gets.
USERS = {"kafka_admin": "admin", "kafka_sasl": "fanout", "kafka_reader": "fanout-reader",
         "kafka_worker": "fanout-worker",
         "cassandra_admin": "admin", "cassandra": "fanout", "cassandra_worker": "fanout_worker",
         "cassandra_ingest": "fanout_ingest", "cassandra_reader": "fanout_reader"}
FIELDS = [f"{prefix}_{part}" for prefix in USERS for part in ("username", "password")]
# They end up inside JAAS strings ("...") and CQL literals ('...'): no quotes, backslashes or spaces.
_SAFE = re.compile(r"[A-Za-z0-9._~+/=@:-]+")


def path(s: Settings) -> Path:
    return project_path(s.stack.state_dir) / FILE


def read(s: Settings) -> dict[str, str]:
    """The stack's credentials by setting name; empty when the stack has none."""
    try:
        lines = path(s).read_text().splitlines()
    except FileNotFoundError:
        return {}
    pairs = (line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
    return {name.removeprefix("FANOUT_").lower(): value for name, value in pairs if name.startswith("FANOUT_")}


def fill(s: Settings) -> Settings:
    """`s` with each credential it leaves empty (user and password) taken from the stack's file; unchanged
    without one. A user given without its password is not completed with another user's password."""
    known = read(s)
    missing: dict[str, Any] = {
        field: known.get(field, "")
        for prefix in USERS if not getattr(s, f"{prefix}_username") and not getattr(s, f"{prefix}_password")
        for field in (f"{prefix}_username", f"{prefix}_password")
    }
    return dataclasses.replace(s, **missing) if any(missing.values()) else s


def of_stack(s: Settings) -> Settings | None:
    """`s` with exactly the stack's credentials (the servers were made with these, whatever the env says
    now), or None for a stack without them."""
    known = read(s)
    values: dict[str, Any] = {f: known.get(f, "") for f in FIELDS}
    return dataclasses.replace(s, **values) if known else None


def create(s: Settings) -> Settings:
    """Write the stack's file if missing (values from `s`, else generated) and return `s` filled from it."""
    target = path(s)
    if not target.exists():
        values = {name: value for prefix, user in USERS.items() for name, value in (
            (f"{prefix}_username", getattr(s, f"{prefix}_username") or user),
            (f"{prefix}_password", getattr(s, f"{prefix}_password") or secrets.token_urlsafe(18)))}
        bad = [name for name, value in values.items() if not _SAFE.fullmatch(value)]
        if bad:
            raise ValueError(f"{', '.join('FANOUT_' + n.upper() for n in bad)}: use letters, digits and ._~+/=@:- only")
        text = "# The local stack's credentials (deploy/credentials.py); `fanout stack down --wipe` deletes them.\n"
        text += "".join(f"FANOUT_{name.upper()}={value}\n" for name, value in values.items())
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{FILE}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        try:
            os.link(tmp, target)  # fails if another `up` wrote it first: theirs is kept, and used
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return fill(s)


def wipe(s: Settings) -> None:
    path(s).unlink(missing_ok=True)

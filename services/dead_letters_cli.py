"""`fanout dead-letters list|replay`: what the worker dead-lettered or parked, and putting it back."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from deploy.stack import on_stack
from fanout.settings import Settings
from fanout.write.dead_letters import DeadLetter, read_dead_letters, replay, select

dead_letters_app = typer.Typer(no_args_is_help=True, help="Events the worker dead-lettered (malformed) or parked "
                               "(their handler kept failing): list them, replay them.")
console = Console(stderr=True)


def register(app: typer.Typer) -> None:
    app.add_typer(dead_letters_app, name="dead-letters")


def _when(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S") if ms > 0 else "-"


def _table(letters: list[DeadLetter]) -> Table:
    table = Table("id", "time (UTC)", "reason", "source", "key", "error", "preview", title="dead letters")
    for d in letters:
        table.add_row(d.id, _when(d.timestamp_ms), d.reason, d.source, (d.key or b"").decode(errors="replace"),
                      d.error, d.preview())
    return table


@dead_letters_app.command("list")
def list_dead_letters(
    reason: Annotated[str | None, typer.Option(help="only this reason (handler_error: parked; bad_json, ...)")] = None,
) -> None:
    """Show every dead letter: reason, source topic[partition]@offset, time, key, error and a preview."""
    letters = select(read_dead_letters(on_stack(Settings.load())), reason)
    Console(soft_wrap=False).print(_table(letters))
    console.print(f"{len(letters)} dead letters" + (f" with reason {reason}" if reason else ""))


@dead_letters_app.command("replay")
def replay_dead_letters(
    reason: Annotated[str | None, typer.Option(help="replay the dead letters with this reason")] = None,
    ids: Annotated[list[str] | None, typer.Option("--id", help="replay this dead letter (repeatable)")] = None,
    everything: Annotated[bool, typer.Option("--all", help="replay every dead letter")] = False,
) -> None:
    """Re-publish dead letters to their source topics (idempotent: handlers are). Name what to replay."""
    if not (reason or ids or everything):
        console.print("[bold red]error:[/] name what to replay: --reason R, --id N (repeatable) or --all")
        raise typer.Exit(2)
    s = on_stack(Settings.load())
    ids = ids or []
    letters = select(read_dead_letters(s), reason, ids)
    missing = sorted(set(ids) - {d.id for d in letters})
    if missing:
        console.print(f"[bold red]error:[/] no dead letter with id {', '.join(missing)}" +
                      (f" and reason {reason}" if reason else ""))
        raise typer.Exit(1)
    count = replay(s, letters)
    console.print(f"replayed {count} dead letters to their source topics")

"""The `fanout` command: one entry point for every process and tool of the project."""

from __future__ import annotations

import sys
import time

import typer
from rich.console import Console
from rich.table import Table

from deploy import stack
from fanout.settings import Settings

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Hybrid feed fan-out pipeline.")
stack_app = typer.Typer(no_args_is_help=True, help="Local Kafka, Cassandra and Prometheus (real servers).")
app.add_typer(stack_app, name="stack")
console = Console(stderr=True)


def _fail(exc: Exception) -> None:
    console.print(f"[bold red]error:[/] {exc}")
    raise typer.Exit(1)


@stack_app.command("up")
def stack_up() -> None:
    """Start Kafka, Cassandra and Prometheus (what is not running yet) and wait until each is ready."""
    s = Settings.load()
    t0 = time.monotonic()
    try:
        with console.status("starting the stack") as spinner:
            statuses = stack.up(s, say=lambda msg: spinner.update(msg) or console.log(msg))
    except (stack.StackError, KeyboardInterrupt) as exc:
        _fail(exc if isinstance(exc, stack.StackError) else stack.StackError("interrupted; stopped what started"))
        return
    _print_status(statuses)
    console.print(f"stack ready in {time.monotonic() - t0:.1f}s; stop it with [bold]fanout stack down[/]")


@stack_app.command("down")
def stack_down(wipe: bool = typer.Option(False, "--wipe", help="also delete the servers' data")) -> None:
    """Stop the servers this stack started (by pid); data is kept unless --wipe."""
    stack.down(Settings.load(), wipe=wipe, say=console.print)


@stack_app.command("status")
def stack_status() -> None:
    """Show each server up or down."""
    statuses = stack.status(Settings.load())
    _print_status(statuses)
    if not all(st.ready for st in statuses):
        raise typer.Exit(3)


@stack_app.command("logs")
def stack_logs(
    name: str = typer.Argument(..., help="kafka, cassandra or prometheus"),
    lines: int = typer.Option(50, "-n", "--lines"),
    follow: bool = typer.Option(False, "-f", "--follow"),
) -> None:
    """Show a server's log."""
    try:
        for chunk in stack.follow_log(stack.server_by_name(Settings.load(), name), lines, follow):
            sys.stdout.write(chunk)
            sys.stdout.flush()
    except stack.StackError as exc:
        _fail(exc)
    except KeyboardInterrupt:
        pass


def _print_status(statuses: list[stack.Status]) -> None:
    table = Table("server", "state", "pid", "listens on", "memory", "log")
    for st in statuses:
        state = "[green]up[/]" if st.ready else ("[yellow]starting[/]" if st.pid else "[red]down[/]")
        mem = f"{stack.resident_memory_mb(st.pid):.0f} MiB" if st.pid else "-"
        table.add_row(st.name, state, str(st.pid or "-"), st.address, mem, str(st.log))
    Console().print(table)


def main() -> None:
    app()


if __name__ == "__main__":
    main()

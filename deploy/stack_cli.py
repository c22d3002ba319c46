"""`fanout stack up|down|status|logs`: the local Kafka, Cassandra and Prometheus (deploy/stack.py)."""

from __future__ import annotations

import sys
import time

import typer
from rich.console import Console
from rich.table import Table

from deploy import prerequisites, stack
from fanout.settings import Settings

stack_app = typer.Typer(no_args_is_help=True, help="Local Kafka, Cassandra and Prometheus (real servers).")
console = Console(stderr=True)


def register(app: typer.Typer) -> None:
    app.add_typer(stack_app, name="stack")


def _fail(exc: Exception) -> None:
    console.print(f"[bold red]error:[/] {exc}")
    raise typer.Exit(1)


def settings() -> Settings:
    return stack.on_stack(Settings.load())


@stack_app.command("up")
def stack_up(
    nodes: int = typer.Option(None, "--nodes", help="1 (default), or 3+: that many Kafka brokers and Cassandra "
                                                      "nodes on 127.0.0.1..N, replication factor 3, quorum"),
) -> None:
    """Start Kafka, Cassandra and Prometheus (what is not running yet) and wait until each is ready."""
    s = stack.on_stack(Settings.load(), nodes)
    t0 = time.monotonic()
    try:
        with console.status("starting the stack") as spinner:

            def say(message: str) -> None:
                spinner.update(message)
                console.log(message)

            statuses = stack.up(s, say=say)
    except (stack.StackError, KeyboardInterrupt) as exc:
        _fail(exc if isinstance(exc, stack.StackError) else stack.StackError("interrupted; stopped what started"))
        return
    _print_status(statuses)
    console.print(f"stack ready in {time.monotonic() - t0:.1f}s; stop it with [bold]fanout stack down[/]")


@stack_app.command("check")
def stack_check(
    purpose: str = typer.Argument("all", help=f"{', '.join(prerequisites.PURPOSES)}: what the machine is for"),
) -> None:
    """Show every prerequisite of PURPOSE, found or missing, and the command that installs the missing ones."""
    if purpose not in prerequisites.PURPOSES:
        _fail(stack.StackError(f"no purpose {purpose!r}; one of {', '.join(prerequisites.PURPOSES)}"))
    s = settings()
    report = prerequisites.check(purpose, s.stack.prometheus_bin)
    table = Table("prerequisite", "Debian package", "what for", "found")
    known = prerequisites.prerequisites(s.stack.prometheus_bin)
    for name in prerequisites.PURPOSES[purpose]:
        why = report.missing.get(name)
        found = f"[red]no: {why}[/]" if why else "[green]yes[/]"
        table.add_row(name, known[name].package or known[name].by_hand, known[name].why, found)
    console.print(table)
    if report.missing:
        console.print(f"install the missing ones with: [bold]{report.install_command()}[/]")
        raise typer.Exit(1)


@stack_app.command("down")
def stack_down(wipe: bool = typer.Option(False, "--wipe", help="also delete the servers' data")) -> None:
    """Stop the servers this stack started (by pid); data is kept unless --wipe."""
    stack.down(settings(), wipe=wipe, say=console.print)


@stack_app.command("status")
def stack_status() -> None:
    """Show each server up or down."""
    statuses = stack.status(settings())
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
        for chunk in stack.follow_log(stack.server_by_name(settings(), name), lines, follow):
            sys.stdout.write(chunk)
            sys.stdout.flush()
    except stack.StackError as exc:
        _fail(exc)
    except KeyboardInterrupt:
        pass


def _print_status(statuses: list[stack.Status]) -> None:
    table = Table("server", "state", "pid", "listens on", "memory")
    for st in statuses:
        state = "[green]up[/]" if st.ready else ("[yellow]starting[/]" if st.pid else "[red]down[/]")
        mem = f"{stack.resident_memory_mb(st.pid):.0f} MiB" if st.pid else "-"
        table.add_row(st.name, state, str(st.pid or "-"), st.address, mem)
    Console().print(table)
    # Plain lines, not a table column: a path must never be cut to the terminal width.
    for st in statuses:
        typer.echo(f"{st.name} log: {st.log}")

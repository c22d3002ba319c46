"""`fanout compose init|which`: the compose deployment's .env (generated passwords, images) and its CLI."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from deploy import compose
from deploy.errors import StackError
from fanout.settings import Settings

compose_app = typer.Typer(no_args_is_help=True, help="docker-compose.yml: generated passwords, images that build "
                          "without a registry, the compose CLI.")
console = Console(stderr=True)


def register(app: typer.Typer) -> None:
    app.add_typer(compose_app, name="compose")


@compose_app.command("init")
def init(
    nodes: Annotated[int, typer.Option(help="1, or 3: the cluster profile (3 brokers, 3 Cassandra nodes)")] = 1,
    images: Annotated[str, typer.Option(help="auto: official images where they can be pulled, else local "
                                             "builds; official; local")] = "auto",
    build: Annotated[bool, typer.Option(help="build the local images and the project's image now")] = True,
    env_file: Annotated[Path, typer.Option(help="the env file to write")] = compose.COMPOSE_FILE.parent / ".env",
) -> None:
    """Write .env (mode 0600) with a generated password for every login (kept if already set), the
    images to run, and the profiles; build what cannot be pulled. Then: docker compose up -d --wait."""
    s = Settings.load()
    try:
        with console.status("preparing the compose deployment") as spinner:

            def say(message: str) -> None:
                spinner.update(message)
                console.log(message)

            values = compose.init(s, env_file, nodes, images, build, say)
            cli = shlex.join(compose.compose_command(s, say))
    except StackError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(1) from exc
    console.print(f"{env_file} written (mode 0600); profiles: {values['COMPOSE_PROFILES'] or 'none'}")
    console.print(f"start it:   {cli} up -d --wait")
    console.print(f"a token:    {cli} exec read-api fanout token 1")
    console.print(f"stop it:    {cli} down -v   (-v deletes the data)")


@compose_app.command("which")
def which() -> None:
    """Print the compose CLI command (built from its Go module where docker has no compose plugin)."""
    try:
        print(shlex.join(compose.compose_command(Settings.load(), console.log)))
    except StackError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(1) from exc

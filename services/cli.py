"""The `fanout` command: the process entry points (worker, read-api, ingest-api), the local stack,
`migrate` and `publish`. Other installed packages add command groups through the `fanout.commands` entry
points (pyproject.toml): bench/ adds `fanout bench` and `fanout demo`, and the product imports none of it."""

from __future__ import annotations

import dataclasses
import importlib.metadata
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from deploy import stack
from deploy.compose_cli import register as register_compose
from deploy.stack_cli import register as register_stack
from fanout.core.events import Event
from fanout.settings import Settings
from fanout.write.producer import EventProducer, PublishError
from services.dead_letters_cli import register as register_dead_letters

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Hybrid feed fan-out pipeline.")
console = Console(stderr=True)


def _fail(exc: Exception) -> None:
    console.print(f"[bold red]error:[/] {exc}")
    raise typer.Exit(1)


def settings() -> Settings:
    """The settings of every command: FANOUT_* variables, on the stack in FANOUT_STATE_DIR (its node count)."""
    return stack.on_stack(Settings.load())


@app.command()
def migrate() -> None:
    """Create the Kafka topics with their ACLs, the Cassandra roles (given the admin's credentials), the
    keyspace and tables (idempotent)."""
    from deploy.server_auth import create_roles
    from fanout.adapters.cassandra import migrate as migrate_cassandra
    from fanout.bootstrap import wait_out_outages
    from fanout.write.producer import ensure_topics

    s = settings()
    if s.cassandra_admin_username:
        create_roles(s, console.print)
    # Each step is idempotent, so a broker still starting (a restarted compose service) is waited out.
    created = wait_out_outages(s, "Kafka", lambda: ensure_topics(s))
    console.print(f"kafka topics: created {created or 'none'} (events, chunks, dead letters, feed updates, feed reads, "
                  "notifications)")
    statements = migrate_cassandra(s)
    console.print(f"cassandra keyspace {s.keyspace}: {len(statements)} statements applied")


@app.command()
def worker(loglevel: str = typer.Option("info", help="Faust log level")) -> None:
    """Run the stream processor (Faust worker) with metrics on FANOUT_WORKER_METRICS_PORT."""
    from services import worker as worker_process

    worker_process.run(settings().as_process("worker"), loglevel)


@app.command()
def notifier(loglevel: str = typer.Option("info", help="Faust log level")) -> None:
    """Run the notifier (notification feeds, a consumer of its own) with metrics on FANOUT_NOTIFIER_METRICS_PORT."""
    from services import notifier as notifier_process

    notifier_process.run(settings().as_process("worker"), loglevel)


@app.command("read-api")
def read_api(
    workers: int = typer.Option(0, "--workers", help="processes serving the port (0: FANOUT_READ_WORKERS)"),
) -> None:
    """Serve the merged feed over HTTP on FANOUT_READ_API_PORT."""
    from services import read_api as read_service

    s = settings().as_process("reader")
    read_service.run(dataclasses.replace(s, read_workers=workers) if workers else s)


@app.command("ingest-api")
def ingest_api() -> None:
    """Accept events over HTTP on FANOUT_INGEST_API_PORT and publish them to Kafka."""
    from services import ingest_api as ingest_service

    ingest_service.run(settings().as_process("ingest"))


@app.command()
def up(
    workers: int = typer.Option(1, min=1, help="worker processes; worker i serves metrics on "
                                                "FANOUT_WORKER_METRICS_PORT + i - 1"),
    stop_timeout: float = typer.Option(20.0, help="seconds from SIGTERM to SIGKILL when stopping"),
) -> None:
    """Run the pipeline in the foreground on the running stack: migrate, then the worker(s), read API and
    ingest API; a process that exits is restarted with backoff; Ctrl-C stops them all."""
    from services import up as up_process

    raise typer.Exit(up_process.run(settings(), workers, stop_timeout))


@app.command()
def token(
    user_id: int = typer.Argument(..., help="the user the token authenticates (its sub)"),
    ttl: int | None = typer.Option(None, "--ttl", min=1,
                                   help="seconds it stays valid (default FANOUT_TOKEN_TTL_SECONDS)"),
    url: bool = typer.Option(False, "--url", help="print the feed page's URL signed in as USER_ID instead"),
) -> None:
    """Print a bearer token for USER_ID, signed with the local key; with --url, the feed page signed in as
    USER_ID (the token in the URL's fragment, which the browser sends to no server).

    curl -H "Authorization: Bearer $(fanout token 1)" localhost:8080/v1/feed"""
    from fanout.api.auth import mint_token
    from fanout.read.page import page_url

    s = Settings.load()
    try:
        token = mint_token(s, user_id, ttl)
    except (ValueError, OSError) as exc:
        _fail(exc)
        return
    typer.echo(page_url(s, token) if url else token)


publish_app = typer.Typer(no_args_is_help=True, help="Publish one event to Kafka (waits for the broker's ack).")
app.add_typer(publish_app, name="publish")


@publish_app.command("post")
def publish_post(author_id: int, body: str) -> None:
    """Publish a new post by AUTHOR_ID."""
    _publish(lambda p: p.publish_post(author_id, body), mints_ids=True)


@publish_app.command("delete")
def publish_delete(author_id: int, post_id: int) -> None:
    """Delete POST_ID of AUTHOR_ID."""
    _publish(lambda p: p.delete_post(author_id, post_id))


@publish_app.command("follow")
def publish_follow(follower_id: int, followee_id: int) -> None:
    """FOLLOWER_ID starts following FOLLOWEE_ID."""
    _publish(lambda p: p.follow(follower_id, followee_id))


@publish_app.command("unfollow")
def publish_unfollow(follower_id: int, followee_id: int) -> None:
    """FOLLOWER_ID stops following FOLLOWEE_ID."""
    _publish(lambda p: p.unfollow(follower_id, followee_id))


def _publish(action: Callable[[EventProducer], Event], mints_ids: bool = False) -> None:
    """Publish one event; a post's id is minted under a leased node id (it needs Cassandra too)."""
    from fanout.bootstrap import open_resources
    from fanout.core.codec import encode
    from fanout.write.leases import NoLease

    try:
        res = open_resources(settings(), producer=True, lease=mints_ids)
    except NoLease as exc:
        _fail(exc)
        return
    try:
        event = action(res.producer)
    except (PublishError, NoLease) as exc:
        _fail(exc)
        return
    finally:
        res.close()
    typer.echo(encode(event).decode())


import_app = typer.Typer(no_args_is_help=True, help="Bulk imports that end as if their events came through Kafka.")
app.add_typer(import_app, name="import")


@import_app.command("follows")
def import_follows(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False,
                                         help="CSV follower_id,followee_id[,event_time] or JSONL (.jsonl/.ndjson)")],
    event_time: int = typer.Option(0, help="event time (ms) of lines without one; 0: now"),
    jobs: int = typer.Option(2, min=1, help="processes, authors split between them"),
) -> None:
    """Import a follow graph through the follow handler: edges, counts, tiers, celebrity sets and backfills
    end exactly as the worker leaves them. Run it while no worker serves these authors."""
    from fanout.write.graph_import import BadLine
    from services import import_graph

    try:
        result = import_graph.run(settings(), file, event_time, console, jobs)
    except BadLine as exc:
        _fail(exc)
        return
    console.print(f"imported {result['follows']:,} follows in {result['seconds']} s "
                  f"({result['follows_per_s']:,} follows/s)")


for command_group in importlib.metadata.entry_points(group="fanout.commands"):
    command_group.load()(app)  # `fanout bench ...` and `fanout demo`, where bench/ is installed
register_stack(app)  # `fanout stack up|down|status|logs`
register_dead_letters(app)  # `fanout dead-letters list|replay`
register_compose(app)  # `fanout compose init|which`


def main() -> None:
    app()


if __name__ == "__main__":
    main()

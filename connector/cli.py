"""The ``connector`` command: run the service, manage stores, destinations and events.

Output meant for machines is JSON (one object per line); errors are one line on stderr with a
non-zero exit, as click does for bad arguments.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import click
from dotenv import find_dotenv, load_dotenv
from sqlalchemy import make_url, select
from sqlalchemy.exc import OperationalError, ProgrammingError

from connector.cli_consent import consent
from connector.cli_destinations import describe_destination, destinations, tiktok
from connector.cli_recovered import recovered
from connector.clitools import LazyServices, emit, services_from
from connector.config import Settings, load_settings
from connector.db import upgrade_database
from connector.demo import demo
from connector.embedded_redis import start_redis
from connector.logs import configure_logging
from connector.metrics import MULTIPROCESS_ENV
from connector.models import EventStatus, OutboxEvent, Store, StoreDestination
from connector.plugins import load_store_platforms
from connector.reconcile import parse_since, reconcile_store
from connector.replay import replay_events
from connector.runtime import Runtime, remove_runtime, running_connector, write_runtime
from connector.services import Services
from connector.stored_secrets import (
    ColumnReport,
    check_secrets,
    forget_undecryptable,
    rotate_secrets,
    startup_refusal,
    undecryptable_summary,
)
from connector.stores import StoreError
from connector.unreadable import describe as describe_unreadable
from connector.unreadable import reprocess, unreadable_records
from connector.web.merchant.access import LOGIN_LINK_MINUTES, login_token

EVENT_STATUSES = [status.value for status in EventStatus]
UNREADABLE = "unreadable"


class ConnectorGroup(click.Group):
    """Turns database errors into one line with the likely fix, instead of a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except (OperationalError, ProgrammingError) as exc:
            settings = ctx.ensure_object(LazyServices).settings()
            raise click.ClickException(_database_advice(str(exc.orig), settings)) from None


def _database_advice(error: str, settings: Settings) -> str:
    """Name the database that was opened: a missing table most often means the wrong folder."""
    problem = error.splitlines()[0]
    database = make_url(settings.database_url).render_as_string(hide_password=True)
    if "no such table" not in problem and "does not exist" not in problem:
        return f"database error ({problem}) in {database}"
    return (
        f"{database} has no connector tables ({problem}): it is a new database, or not the "
        f"connector's. The instance folder is {settings.instance_path} (CONNECTOR_INSTANCE_PATH, "
        "else `instance` in the current folder): cd to the folder where `connector run` was "
        "started or set CONNECTOR_INSTANCE_PATH (or DATABASE_URL); for a new install, run "
        "`connector db upgrade`"
    )


@click.group(cls=ConnectorGroup)
@click.pass_context
def main(ctx: click.Context) -> None:
    """Server-side conversions from store webhooks to ad platforms (TikTok, Meta, Google Ads).

    Reads a .env file (in the current folder or the nearest parent that has one) without
    overriding variables already set.
    """
    load_dotenv(find_dotenv(usecwd=True), override=False)
    services = ctx.ensure_object(LazyServices)
    settings = services.settings()
    configure_logging(settings.log_format, settings.log_level)


# -- processes ---------------------------------------------------------------------------------


LOOPBACK = "127.0.0.1"
ALL_INTERFACES = "0.0.0.0"


@main.command()
@click.option("--port", type=int, help="Port of the web server (default: $PORT, else 8000).")
@click.option(
    "--host",
    help=f"Address to listen on (default: $HOST, else {LOOPBACK}: this machine only).",
)
@click.pass_context
def run(ctx: click.Context, port: int | None, host: str | None) -> None:
    """Everything on one machine: migrations, Redis if needed, the web server and a worker.

    Records its Redis and address in the instance folder's runtime.json, so commands run from
    another terminal queue their deliveries on the same Redis.
    """
    settings = load_settings()
    _refuse_second_run(settings.instance_path)
    port = port or settings.port
    host = host or settings.host or LOOPBACK
    app_url = os.environ.get("APP_URL") or f"http://localhost:{port}"
    env = dict(os.environ, PORT=str(port), APP_URL=app_url)
    env[MULTIPROCESS_ENV] = _fresh_metrics_folder(settings.instance_path / "metrics")
    click.echo(f"migrating {settings.database_url.split('@')[-1]}", err=True)
    upgrade_database(settings.database_url)
    _refuse_undecryptable_secrets(services_from(ctx))
    redis = None
    if not settings.redis_url:
        redis = start_redis(settings.instance_path / "redis")
        env["REDIS_URL"] = redis.url
        click.echo(f"embedded Redis on 127.0.0.1:{redis.port}", err=True)
    web_command = ["web", "--port", str(port), "--host", host]
    children = [
        subprocess.Popen([sys.executable, "-m", "connector.cli", "worker"], env=env),
        subprocess.Popen([sys.executable, "-m", "connector.cli", *web_command], env=env),
    ]
    web_url = f"http://{host}:{port}"
    runtime = Runtime(os.getpid(), redis_url=redis.url if redis else None, web_url=web_url)
    write_runtime(settings.instance_path, runtime)
    click.echo(f"connector listening on {web_url}", err=True)
    try:
        _supervise(children)
    finally:
        remove_runtime(settings.instance_path, runtime.pid)
        for child in children:
            if child.poll() is None:
                child.terminate()
        for child in children:
            child.wait()
        if redis is not None:
            redis.stop()


def _refuse_second_run(instance: Path) -> None:
    """One ``connector run`` per instance folder: a second would share its database and files."""
    running = running_connector(instance)
    if running is not None:
        raise click.ClickException(
            f"`connector run` is already running for {instance} (pid {running.pid}, "
            f"{running.web_url}); stop it first, or set CONNECTOR_INSTANCE_PATH to another folder"
        )


def _supervise(children: list[subprocess.Popen[bytes]]) -> None:
    """Wait until a child exits or we are told to stop (Ctrl-C, SIGTERM)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
    except KeyboardInterrupt:
        return
    failed = [child.args for child in children if child.poll()]
    if failed:
        raise click.ClickException(f"a process stopped unexpectedly: {failed[0]}")


@main.command()
@click.option("--port", type=int, help="Port to listen on (default: $PORT, else 8000).")
@click.option(
    "--host",
    help=f"Address to listen on (default: $HOST, else {ALL_INTERFACES}, as platforms need).",
)
@click.pass_context
def web(ctx: click.Context, port: int | None, host: str | None) -> None:
    """The web process (the Procfile's ``web``): gunicorn serving ``app:create_app()``.

    Listens on every interface unless told otherwise: Heroku and other platforms route to it
    from outside the container.
    """
    _refuse_undecryptable_secrets(services_from(ctx))
    settings = load_settings()
    if MULTIPROCESS_ENV not in os.environ:  # gunicorn's processes share their metrics here
        folder = settings.instance_path / "metrics-web"
        os.environ[MULTIPROCESS_ENV] = _fresh_metrics_folder(folder)
    args = [
        sys.executable, "-m", "gunicorn", "app:create_app()",
        "--bind", f"{host or settings.host or ALL_INTERFACES}:{port or settings.port}",
        "--workers", str(settings.web_concurrency),
        "--access-logfile", "-",
        # Paths without query strings or login tokens (connector/web/accesslog.py).
        "--access-logformat", '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms "%(a)s"',
        "--logger-class", "connector.web.accesslog.RedactingLogger",
        "--graceful-timeout", "25",
    ]  # fmt: skip
    os.execv(sys.executable, args)


def _refuse_undecryptable_secrets(services: Services) -> None:
    """Stop here, with the fix, rather than serve 503s for stores whose secrets are lost."""
    refusal = startup_refusal(services)
    services.db.dispose()  # the process goes on to exec or fork: no connection to inherit
    if refusal:
        raise click.ClickException(refusal)


def _fresh_metrics_folder(folder: Path) -> str:
    """An empty folder for prometheus-client's multiprocess files (old ones would add up)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return str(folder)


@main.command()
@click.option("--burst", is_flag=True, help="Stop when the queue is empty (for scripts).")
@click.pass_context
def worker(ctx: click.Context, burst: bool) -> None:
    """The delivery worker (the Procfile's ``worker``)."""
    from connector.worker import run_worker

    settings = ctx.ensure_object(LazyServices).settings()
    if not settings.redis_url:
        raise click.ClickException(
            f"REDIS_URL is not set and no `connector run` is running for {settings.instance_path}:"
            " set REDIS_URL (e.g. redis://localhost:6379/0), or use `connector run`, which "
            "starts an embedded Redis and a worker"
        )
    services = services_from(ctx)
    _refuse_undecryptable_secrets(services)
    run_worker(services, burst=burst)


@main.group()
def db() -> None:
    """The database schema."""


@db.command()
@click.pass_context
def upgrade(ctx: click.Context) -> None:
    """Apply pending migrations (the Procfile's ``release``)."""
    services_from(ctx).db.upgrade()
    click.echo("database is up to date", err=True)


main.add_command(demo)
main.add_command(destinations)
main.add_command(tiktok)


# -- stores ------------------------------------------------------------------------------------


@main.group()
def stores() -> None:
    """Connected stores."""


for _platform in load_store_platforms():
    for _command in _platform.commands:
        stores.add_command(_command)
stores.add_command(recovered)
stores.add_command(consent)


@stores.command("list")
@click.pass_context
def list_stores(ctx: click.Context) -> None:
    """Every store and its destinations, one JSON object per line."""
    services = services_from(ctx)
    with services.db.session() as session:
        for store in session.scalars(select(Store).order_by(Store.created_at)):
            destinations = session.scalars(
                select(StoreDestination).where(StoreDestination.store_id == store.id)
            )
            emit(
                {
                    "store_id": store.id,
                    "platform": store.platform,
                    "domain": store.domain,
                    "status": store.status,
                    "destinations": [
                        describe_destination(services.destinations.get(d.kind), d)
                        for d in destinations
                    ],
                    "reconciled_until": _iso(store.reconciled_until),
                    "reconciled_at": _iso(store.reconciled_at),
                    "reconcile_error": store.reconcile_error,
                }
            )


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


@stores.command("reconcile")
@click.argument("store_id")
@click.option(
    "--since",
    metavar="AGE|DATE",
    help="Read orders changed since then: 2d, 12h, 30m or an ISO date (default: the checkpoint).",
)
@click.pass_context
def reconcile(ctx: click.Context, store_id: str, since: str | None) -> None:
    """Ask the store's API for orders changed since the checkpoint and record the missing ones."""
    try:
        start = parse_since(since) if since else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None
    try:
        summary = reconcile_store(services_from(ctx), store_id, since=start)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    if summary.error:
        raise click.ClickException(summary.error)
    emit(summary.to_json())


@stores.command("login-link")
@click.argument("store_id")
@click.pass_context
def login_link(ctx: click.Context, store_id: str) -> None:
    """A link that logs a browser in to the store's settings pages (once, for a short time)."""
    services = services_from(ctx)
    with services.db.session() as session:
        if session.get(Store, store_id) is None:
            raise click.ClickException(f"no store {store_id}: see `connector stores list`")
    token = login_token(services.settings.secret_key, store_id)
    emit(
        {
            "store_id": store_id,
            "login_url": f"{services.settings.app_url}/login/{token}",
            "expires_in_minutes": LOGIN_LINK_MINUTES,
        }
    )


# -- events ------------------------------------------------------------------------------------


@main.group()
def events() -> None:
    """The event outbox: what was sent, what failed, and why."""


@events.command("list")
@click.option("--store", "store_id", help="Only this store's events.")
@click.option(
    "--status",
    type=click.Choice([*EVENT_STATUSES, UNREADABLE]),
    help="Only events in this status; 'unreadable' lists the kept webhooks that could not be read.",
)
@click.option("--destination", "kind", help="Only events for this destination (tiktok, meta...).")
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True)
@click.pass_context
def list_events(
    ctx: click.Context, store_id: str | None, status: str | None, kind: str | None, limit: int
) -> None:
    """Newest events first, one JSON object per line."""
    services = services_from(ctx)
    if status == UNREADABLE:
        for record in unreadable_records(services, store_id=store_id, limit=limit):
            emit(describe_unreadable(record))
        return
    query = select(OutboxEvent).order_by(OutboxEvent.id.desc()).limit(limit)
    if store_id:
        query = query.where(OutboxEvent.store_id == store_id)
    if status:
        query = query.where(OutboxEvent.status == status)
    if kind:
        query = query.where(OutboxEvent.destination == kind)
    with services.db.session() as session:
        for event in session.scalars(query):
            emit(
                {
                    "id": event.id,
                    "store_id": event.store_id,
                    "destination": event.destination,
                    "event": event.event_name,
                    "event_id": event.event_id,
                    "status": event.status,
                    "attempts": event.attempts,
                    "last_error": event.last_error,
                    "last_code": event.last_code,
                    "click_source": event.click_source,
                    "received_at": event.received_at.isoformat(),
                }
            )


@events.command("replay")
@click.option("--id", "ids", type=int, multiple=True, help="An event id (repeatable).")
@click.option("--status", type=click.Choice(["failed", "dead"]), help="Every event in this status.")
@click.option("--store", "store_id", help="With --status: only this store's events.")
@click.option("--destination", "kind", help="With --status: only this destination's events.")
@click.pass_context
def replay(
    ctx: click.Context,
    ids: tuple[int, ...],
    status: str | None,
    store_id: str | None,
    kind: str | None,
) -> None:
    """Put failed or dead events back in the queue."""
    if bool(ids) == bool(status):
        raise click.UsageError("give either --id (one or more) or --status")
    count = replay_events(
        services_from(ctx), ids=list(ids), status=status, store_id=store_id, kind=kind
    )
    emit({"replayed": count})


@events.command("reprocess")
@click.option("--store", "store_id", help="Only this store's kept webhooks.")
@click.pass_context
def reprocess_unreadable(ctx: click.Context, store_id: str | None) -> None:
    """Read the kept unreadable webhooks again with this version's code.

    What reads now becomes events (deduplicated as always) and its record goes; the rest stay
    listed by `events list --status unreadable` with their current reason.
    """
    emit(vars(reprocess(services_from(ctx), store_id=store_id)))


# -- secrets -----------------------------------------------------------------------------------


@main.group("secrets")
def secrets_group() -> None:
    """Stored secrets and tokens, and the keys that encrypt them."""


@secrets_group.command("check")
@click.pass_context
def check_stored_secrets(ctx: click.Context) -> None:
    """Which stored values the current key, a fallback key, or no key wrote; changes nothing.

    SECRET_KEY_FALLBACKS can go once nothing is left under a fallback key (``fallback: 0``).
    """
    reports = check_secrets(services_from(ctx))
    emit(_secrets_report(reports, older="fallback"))
    _fail_on_undecryptable(reports)


@secrets_group.command("rotate")
@click.pass_context
def rotate_stored_secrets(ctx: click.Context) -> None:
    """Re-encrypt every stored secret and token with the current key (safe to run again)."""
    reports = rotate_secrets(services_from(ctx))
    emit(_secrets_report(reports, older="rotated"))
    _fail_on_undecryptable(reports)


@secrets_group.command("forget")
@click.option("--yes", is_flag=True, help="Confirm: this cannot be undone.")
@click.pass_context
def forget_stored_secrets(ctx: click.Context, yes: bool) -> None:
    """Remove the stored values no configured key decrypts, when the key that wrote them is
    lost for good; the stores it names need their secrets, keys or tokens entered again."""
    if not yes:
        raise click.UsageError(
            "this empties the webhook secrets and API keys, and deletes the destinations, "
            "Shopify tokens and kept webhooks, that no configured key decrypts (see `connector "
            "secrets check`); if the old key can be found, put it in SECRET_KEY_FALLBACKS "
            "instead. Run again with --yes to go ahead"
        )
    report = _secrets_report(forget_undecryptable(services_from(ctx)), older="fallback")
    emit({**report, "forgotten": report.pop("undecryptable")})


def _secrets_report(reports: list[ColumnReport], *, older: str) -> dict[str, object]:
    """Totals, then each column's counts, with ``older`` naming the values of fallback keys."""
    columns = {
        report.column: {
            "current": report.current,
            older: report.fallback,
            "undecryptable": report.undecryptable,
            "stores": report.stores,
        }
        for report in reports
    }
    totals = {name: sum(c[name] for c in columns.values()) for name in ("current", older)}
    undecryptable = sum(report.undecryptable for report in reports)
    return {**totals, "undecryptable": undecryptable, "columns": columns}


def _fail_on_undecryptable(reports: list[ColumnReport]) -> None:
    if summary := undecryptable_summary(reports):
        raise click.ClickException(
            f"not decryptable with any configured key: {summary}; put the key they were "
            "written with in SECRET_KEY_FALLBACKS, or enter those secrets again (`connector "
            "secrets forget` removes them, when the key is lost for good)"
        )


if __name__ == "__main__":
    main()

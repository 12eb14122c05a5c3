"""``connector destinations``: connect, list, test and remove a store's ad platforms.

The flags of ``destinations set`` are drawn from the destinations' own fields
(``Destination.fields``: ``--pixel-code`` for TikTok, ``--pixel-id`` for Meta, ``--customer-id``
for Google...), so a new destination package brings its flags with it. ``connector tiktok``
stays as an alias of ``destinations ... tiktok`` for the scripts written before there were
several.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import click

from connector.clitools import emit, services_from
from connector.destinations import ConfigField, Destination, load_destinations
from connector.jobs import request_delivery
from connector.mapping import CONTENT_ID_SOURCES, ORDER_TRIGGERS, VALUE_BASES
from connector.models import EventStatus, StoreDestination
from connector.reconcile import parse_since, reconcile_store
from connector.stores import StoreError, destinations_of, remove_destination, set_destination
from connector.testevent import send_test_event

EVENT_OPTIONS: tuple[click.Option, ...] = (
    click.Option(
        ["--purchase-event"],
        help="Event name for orders, one the platform knows; use what your browser tag sends.",
    ),
    click.Option(
        ["--send-on", "order_trigger"],
        type=click.Choice(ORDER_TRIGGERS),
        help="Send the purchase when the order is created (default) or when it is paid.",
    ),
    click.Option(
        ["--value", "value_basis"], type=click.Choice(VALUE_BASES), help="Order value to report."
    ),
    click.Option(
        ["--content-id"], type=click.Choice(CONTENT_ID_SOURCES), help="What identifies a product."
    ),
    click.Option(
        ["--initiate-checkout/--no-initiate-checkout", "send_initiate_checkout"],
        default=None,
        help="Send started checkouts where the platform takes them (default on).",
    ),
    click.Option(
        ["--test-orders/--no-test-orders", "send_test_orders"],
        default=None,
        help="Send the store's test orders while a test event code is set (default on).",
    ),
    click.Option(
        ["--limited-data-use/--no-limited-data-use"],
        default=None,
        help="Ask the platform to limit data use (US state privacy laws).",
    ),
)
OPTION_NAMES = frozenset(str(option.name) for option in EVENT_OPTIONS)


@click.group()
def destinations() -> None:
    """A store's ad platforms (TikTok, Meta, Google...): connect, list, test, remove."""


@destinations.command("list")
@click.argument("store_id")
@click.pass_context
def list_destinations(ctx: click.Context, store_id: str) -> None:
    """The store's destinations, one JSON object per line."""
    services = services_from(ctx)
    for row in destinations_of(services, store_id):
        emit(describe_destination(services.destinations.get(row.kind), row))


def _field_options(apis: Iterable[Destination]) -> list[click.Option]:
    """One option per field name over every destination, with the help of the first."""
    seen: dict[str, tuple[ConfigField, list[str]]] = {}
    for api in apis:
        for field in api.fields:
            seen.setdefault(field.name, (field, []))[1].append(api.kind)
    return [
        click.Option([field.flag, field.name], help=f"{field.help} ({', '.join(kinds)})")
        for field, kinds in seen.values()
    ]


def _set_callback(fixed_kind: str | None) -> Callable[..., None]:
    @click.pass_context
    def callback(ctx: click.Context, store_id: str, kind: str | None = None, **given: Any) -> None:
        kind = kind or fixed_kind or ""
        services = services_from(ctx)
        api = services.destinations.get(kind)
        if api is None:
            known = ", ".join(sorted(services.destinations))
            raise click.BadParameter(f"choose one of {known}", param_hint="KIND")
        options = {k: v for k, v in given.items() if k in OPTION_NAMES and v is not None}
        values = {k: v for k, v in given.items() if k not in OPTION_NAMES and v is not None}
        foreign = set(values) - {field.name for field in api.fields}
        if foreign:
            flags = ", ".join(sorted("--" + name.replace("_", "-") for name in foreign))
            raise click.UsageError(f"{api.label} has no {flags}")
        try:
            row = set_destination(services, store_id, kind=kind, values=values, options=options)
        except (StoreError, ValueError) as exc:
            raise click.ClickException(str(exc)) from None
        queued = request_delivery(services, row.id)
        emit({"store_id": store_id, **describe_destination(api, row), "delivery_requested": queued})

    return callback


def set_command(name: str, *, kind: str | None, apis: Iterable[Destination]) -> click.Command:
    """``set STORE_ID KIND --field value...`` (``kind`` None) or, for an alias, ``set STORE_ID``."""
    chosen = [api for api in apis if kind is None or api.kind == kind]
    params: list[click.Parameter] = [click.Argument(["store_id"])]
    if kind is None:
        params.append(click.Argument(["kind"]))
    params += [*_field_options(chosen), *EVENT_OPTIONS]
    return click.Command(
        name,
        params=params,
        callback=_set_callback(kind),
        help="Connect (or reconnect) a store's destination; un-pauses it and sends what waits."
        " The flags each platform takes are its fields; a flag left out keeps what is stored.",
    )


destinations.add_command(set_command("set", kind=None, apis=load_destinations().values()))


@destinations.command("test")
@click.argument("store_id")
@click.argument("kind")
@click.pass_context
def test_destination(ctx: click.Context, store_id: str, kind: str) -> None:
    """Send one test event to the platform through the whole path and print its answer."""
    _test(ctx, store_id, kind)


@destinations.command("backfill")
@click.argument("store_id")
@click.argument("kind")
@click.option(
    "--since",
    default="7d",
    show_default=True,
    metavar="AGE|DATE",
    help="Orders changed since then: 2d, 12h or an ISO date. Older than the platform takes "
    "are recorded skipped.",
)
@click.pass_context
def backfill(ctx: click.Context, store_id: str, kind: str, since: str) -> None:
    """Send a destination added later the orders it missed, read again from the store's API.

    The outbox keeps each platform's own hashes, never raw email or phone, so the orders are
    read back from the store (as reconciliation does) and recorded for this destination only;
    those it already has add nothing.
    """
    services = services_from(ctx)
    try:
        start = parse_since(since)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None
    try:
        if not any(row.kind == kind for row in destinations_of(services, store_id)):
            raise StoreError(
                f"store {store_id} has no {kind} destination: connect it first "
                f"(`connector destinations set {store_id} {kind} ...`)"
            )
        summary = reconcile_store(services, store_id, since=start, backfill=kind)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    if summary.error:
        raise click.ClickException(summary.error)
    emit(summary.to_json())


@destinations.command("remove")
@click.argument("store_id")
@click.argument("kind")
@click.pass_context
def remove(ctx: click.Context, store_id: str, kind: str) -> None:
    """Disconnect a destination; its events and log go with it."""
    if not remove_destination(services_from(ctx), store_id, kind):
        raise click.ClickException(f"store {store_id} has no {kind} destination")
    emit({"store_id": store_id, "kind": kind, "removed": True})


@click.group()
def tiktok() -> None:
    """The TikTok destination (an alias of `connector destinations ... tiktok`)."""


tiktok.add_command(set_command("set", kind="tiktok", apis=load_destinations().values()))


@tiktok.command("test-event")
@click.argument("store_id")
@click.pass_context
def tiktok_test_event(ctx: click.Context, store_id: str) -> None:
    """Send one test event through the whole path and print TikTok's answer."""
    _test(ctx, store_id, "tiktok")


def _test(ctx: click.Context, store_id: str, kind: str) -> None:
    try:
        outcome = send_test_event(services_from(ctx), store_id, kind)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    emit(outcome)
    if outcome["status"] != EventStatus.DELIVERED:
        ctx.exit(1)


def describe_destination(api: Destination | None, row: StoreDestination) -> dict[str, object]:
    """A destination row as the commands print it: no secret, ever."""
    described: dict[str, object] = {
        "kind": row.kind,
        "label": api.label if api else row.kind,
        "status": "paused" if row.paused_reason else "active",
        "paused_reason": row.paused_reason,
        "test_event_code": row.test_event_code,
        "options": row.options,
    }
    for field in api.fields if api else ():
        if field.stored_as == "account_id":
            described[field.name] = row.account_id
        elif field.stored_as == "setting":
            described[field.name] = (row.settings or {}).get(field.name)
    return described

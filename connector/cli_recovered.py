"""``connector stores recovered STORE_ID [--days 30] [--csv]``: the recovered-conversions
ledger (:mod:`connector.recovered`) on the command line.

Without ``--csv`` it prints one JSON object, as the other ``stores`` commands do, with the
Status page's sentence under ``headline`` and, when no pixel receipt came in the window, how to
install the storefront code under ``install_hint``. With ``--csv`` it prints one line per
purchase instead (order id, the order's time in UTC, value, currency, server status, browser
outcome, browser family, device), streamed, so 100,000 orders never sit in memory.
"""

from __future__ import annotations

import click

from connector.clitools import emit, services_from
from connector.plugins import load_store_platforms
from connector.recovered import DEFAULT_DAYS, DEFAULT_PIXEL, ledger_for_store, orders, write_csv


@click.command("recovered")
@click.argument("store_id")
@click.option(
    "--days",
    type=click.IntRange(1, 366),
    default=DEFAULT_DAYS,
    show_default=True,
    help="The window: purchases received in the last DAYS days.",
)
@click.option("--csv", "as_csv", is_flag=True, help="Print one CSV line per purchase instead.")
@click.option(
    "--pixel",
    default=DEFAULT_PIXEL,
    show_default=True,
    help="The destination whose browser pixel the receipts are about.",
)
@click.pass_context
def recovered(ctx: click.Context, store_id: str, days: int, as_csv: bool, pixel: str) -> None:
    """Purchases sent from the server and which of them the browser pixel did not report."""
    services = services_from(ctx)
    if pixel not in services.destinations:
        raise click.BadParameter(f"there is no destination {pixel!r}", param_hint="--pixel")
    found = ledger_for_store(
        services, store_id, days, pixel=pixel, platforms=load_store_platforms()
    )
    if found is None:
        raise click.ClickException(f"no store {store_id}: see `connector stores list`")
    kept = services.settings.retention_days
    if days > kept:
        click.echo(
            f"note: events and receipts older than {kept} days are deleted "
            "(EVENT_RETENTION_DAYS): the ledger counts only those kept",
            err=True,
        )
    if as_csv:
        write_csv(orders(services, store_id, days, pixel=pixel), _Echo())
        return
    emit(found.to_json())


class _Echo:
    """click's standard output as a file for the CSV writer, one line at a time."""

    def write(self, text: str) -> int:
        click.echo(text, nl=False)
        return len(text)

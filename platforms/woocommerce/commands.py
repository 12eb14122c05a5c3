"""``connector stores add-woocommerce``, ``connect-woocommerce`` and ``check``.

``add-woocommerce`` is the manual path: the merchant pastes the printed URL and secret into
WooCommerce's webhook screen. ``connect-woocommerce`` does that through the store's REST API
with its keys, and records the address it used (from ``APP_URL``) as the store's; ``check``
reads the webhooks back and repairs them toward that recorded address (see
:mod:`platforms.woocommerce.connect` for what counts as a problem). Every error is one line on
stderr with exit status 1; ``check`` also exits 1 while a problem remains.
"""

from __future__ import annotations

import click

from connector.clitools import emit, services_from
from connector.stores import StoreError, add_store
from platforms.woocommerce.connect import (
    ADDRESS_HINT,
    PLATFORM,
    StoreAddress,
    check_store,
    connect_store,
    delivery_url,
    new_webhook_secret,
)
from platforms.woocommerce.rest import RestError


@click.command("add-woocommerce")
@click.option("--url", required=True, help="The store's address, like https://shop.example.")
@click.option("--secret", help="The webhook secret to use (default: a new random one).")
@click.pass_context
def add_woocommerce(ctx: click.Context, url: str, secret: str | None) -> None:
    """Register a WooCommerce store; prints JSON with the webhook URL and secret to paste."""
    services = services_from(ctx)
    try:
        address = StoreAddress.parse(url)
    except ValueError:
        raise click.BadParameter(ADDRESS_HINT) from None
    secret = secret or new_webhook_secret()
    try:
        store = add_store(services, platform=PLATFORM, domain=address.domain, webhook_secret=secret)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    emit(
        {
            "store_id": store.id,
            "url": url.strip(),
            "webhook_url": delivery_url(services, store.id),
            "secret": secret,
        }
    )


@click.command("connect-woocommerce")
@click.option("--url", required=True, help="The store's address, like https://shop.example.")
@click.option("--consumer-key", required=True, help="REST API consumer key (ck_...).")
@click.option("--consumer-secret", required=True, help="REST API consumer secret (cs_...).")
@click.option(
    "--allow-http",
    is_flag=True,
    help="Accept an http:// store address or APP_URL, and a store on this machine (loopback),"
    " now and in every later check (local test stores only: keys, secret and orders travel in"
    " clear).",
)
@click.pass_context
def connect_woocommerce(
    ctx: click.Context, url: str, consumer_key: str, consumer_secret: str, allow_http: bool
) -> None:
    """Connect a store with its REST API keys (Read/Write): creates or repairs its order
    webhooks, delivering to APP_URL, and keeps the keys, encrypted, for the periodic check,
    which repairs them toward that address only. Prints JSON."""
    services = services_from(ctx)
    try:
        address = StoreAddress.parse(url)
    except ValueError:
        raise click.ClickException(f"--url {ADDRESS_HINT}") from None
    if address.is_plain_http and not allow_http:
        raise click.ClickException(
            f"refusing {address.base_url}: over plain http:// the REST API keys and the webhook"
            " secret would travel in clear text; use the store's https:// address"
            " (--allow-http is for local test stores)"
        )
    app_url = services.settings.app_url
    if not app_url.startswith("https://") and not allow_http:
        raise click.ClickException(
            f"refusing APP_URL {app_url}: the store's orders would be sent to it over plain"
            " http://, and it would become the address the webhooks are kept at (is APP_URL"
            " set?); set APP_URL to the connector's public https:// address (--allow-http is"
            " for local test stores)"
        )
    try:
        emit(connect_store(services, address, consumer_key, consumer_secret, allow_http=allow_http))
    except (RestError, StoreError) as exc:
        raise click.ClickException(str(exc)) from None


@click.command("check")
@click.argument("store_id")
@click.option("--repair", is_flag=True, help="Recreate what is wrong, toward the recorded address.")
@click.pass_context
def check(ctx: click.Context, store_id: str, repair: bool) -> None:
    """Read a connected WooCommerce store's webhooks back and report (or repair) ours that
    are disabled, paused, missing, on the wrong topic or pointing away from the address
    recorded when the store was connected; also reports an APP_URL that disagrees with that
    address (and repairs nothing toward it). Prints JSON; exits 1 while a problem remains."""
    try:
        report = check_store(services_from(ctx), store_id, repair=repair)
    except (RestError, StoreError) as exc:
        raise click.ClickException(str(exc)) from None
    emit(report)
    if not report["ok"]:
        ctx.exit(1)

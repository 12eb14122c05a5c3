"""``connector stores add-woocommerce``: register a store whose webhooks are made by hand."""

from __future__ import annotations

import secrets
from urllib.parse import urlsplit

import click

from connector.clitools import emit, services_from
from connector.stores import StoreError, add_store


@click.command("add-woocommerce")
@click.option("--url", required=True, help="The store's address, like https://shop.example.")
@click.option("--secret", help="The webhook secret to use (default: a new random one).")
@click.pass_context
def add_woocommerce(ctx: click.Context, url: str, secret: str | None) -> None:
    """Register a WooCommerce store; prints JSON with the webhook URL and secret to paste."""
    services = services_from(ctx)
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise click.BadParameter("must be the store's address, like https://shop.example")
    domain = parts.hostname.lower() + (parts.path.rstrip("/") or "")
    secret = secret or secrets.token_urlsafe(32)
    try:
        store = add_store(services, platform="woocommerce", domain=domain, webhook_secret=secret)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    emit(
        {
            "store_id": store.id,
            "url": url.strip(),
            "webhook_url": f"{services.settings.app_url}/webhooks/woocommerce/{store.id}",
            "secret": secret,
        }
    )

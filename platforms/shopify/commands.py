"""``connector stores add-shopify`` (register a custom-app store, without OAuth) and
``connector stores shopify-pixel`` (print a store's TikTok custom pixel)."""

from __future__ import annotations

import re

import click

from connector.clitools import emit, services_from
from connector.services import Services
from connector.stores import StoreError, add_store, find_store
from platforms.shopify.custom_pixel import CustomPixelError, store_custom_pixel_code

# Shopify's own anchored pattern; an unanchored one is the WEAK_SHOP_VALIDATION finding
# (https://shopify.dev/docs/apps/build/security/app-security-checks/weak-shop-validation).
SHOP_DOMAIN = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9-]*\.myshopify\.com")


@click.command("add-shopify")
@click.option("--shop", required=True, help="The shop's domain, like example.myshopify.com.")
@click.option("--access-token", required=True, help="The custom app's Admin API access token.")
@click.option(
    "--webhook-secret",
    help="The secret Shopify signs this store's webhooks with (default: SHOPIFY_API_SECRET).",
)
@click.pass_context
def add_shopify(ctx: click.Context, shop: str, access_token: str, webhook_secret: str | None):
    """Register a Shopify store that uses its own custom app; prints JSON."""
    services = services_from(ctx)
    shop = shop.strip().lower()
    if not SHOP_DOMAIN.fullmatch(shop):
        raise click.BadParameter("must look like example.myshopify.com", param_hint="--shop")
    if not (webhook_secret or services.settings.shopify_api_secret):
        raise click.UsageError(
            "give --webhook-secret (the custom app's API secret key), or set SHOPIFY_API_SECRET"
        )
    try:
        store = add_store(
            services,
            platform="shopify",
            domain=shop,
            webhook_secret=webhook_secret,
            access_token=access_token,
        )
    except StoreError as exc:
        raise click.ClickException(_with_registered_id(services, shop, str(exc))) from None
    emit(
        {
            "store_id": store.id,
            "shop": shop,
            "webhook_url": f"{services.settings.app_url}/webhooks/shopify",
        }
    )


def _with_registered_id(services: Services, shop: str, refusal: str) -> str:
    """The refusal, naming the store already registered: every next command needs its id."""
    with services.db.session() as session:
        existing = find_store(session, platform="shopify", domain=shop)
        store_id = existing.id if existing is not None else None
    return f"{refusal} as {store_id}" if store_id else refusal


@click.command("shopify-pixel")
@click.argument("store_id")
@click.pass_context
def shopify_pixel(ctx: click.Context, store_id: str) -> None:
    """Print the store's TikTok custom pixel (JavaScript, not JSON), to paste in the Shopify
    admin under Settings > Customer events > Add custom pixel."""
    try:
        code = store_custom_pixel_code(services_from(ctx), store_id)
    except CustomPixelError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(code, nl=False)

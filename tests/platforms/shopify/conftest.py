"""Fixtures for the Shopify app: app credentials, the Shopify stand-in, an installed store."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import delete

from app import create_app
from connector.models import ClickRecord, ShopifyToken
from connector.services import Services, build_services
from tests.platforms.shopify.helpers import API_KEY, API_SECRET, APP_URL
from tests.standins.shopify import ShopifyStandIn


@pytest.fixture
def shopify(request: pytest.FixtureRequest) -> Iterator[ShopifyStandIn]:
    """The stand-in; its redirect URI is the app's callback at ``APP_URL``."""
    standin = ShopifyStandIn(API_KEY, API_SECRET, f"{APP_URL}/shopify/callback").start()
    yield standin
    standin.stop()


@pytest.fixture
def app_services(settings, shopify) -> Iterator[Services]:  # type: ignore[no-untyped-def]
    """Services of a connector configured as a Shopify app whose Shopify is the stand-in,
    its new tables emptied.

    The shared fixture empties the stores with foreign keys off (SQLite), so their click
    records and tokens would outlive them; they are cleared here.
    """
    built = build_services(
        settings.with_overrides(
            shopify_api_key=API_KEY,
            shopify_api_secret=API_SECRET,
            shopify_scopes="read_orders,write_pixels",
            shopify_admin_base_url=shopify.admin_base_template,
            app_url=APP_URL,
        )
    )
    with built.db.session() as session:
        session.execute(delete(ClickRecord))
        session.execute(delete(ShopifyToken))
        session.commit()
    yield built
    built.db.dispose()


@pytest.fixture
def shopify_app(app_services):  # type: ignore[no-untyped-def]
    application = create_app(services=app_services)
    application.config.update(TESTING=True)
    return application


@pytest.fixture
def browser(shopify_app):  # type: ignore[no-untyped-def]
    """A test client that speaks HTTPS to ``APP_URL``, so the Secure nonce cookie is sent."""
    return shopify_app.test_client()

"""Fixtures for the WooCommerce tests: the store stand-in, services whose ``APP_URL`` is the live
server (so WooCommerce's pings and deliveries really reach the app), and the ``connector``
command run in-process (``tests.support.invoke_connector``).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator

import pytest

from connector.services import Services, build_services
from tests.platforms.woocommerce.helpers import (
    CONSUMER_KEY,
    CONSUMER_SECRET,
    READ_ONLY_KEY,
    READ_ONLY_SECRET,
)
from tests.standins.woocommerce import WooCommerceStandIn
from tests.support import invoke_connector

Connector = Callable[..., subprocess.CompletedProcess]


@pytest.fixture(scope="session")
def woo_session() -> Iterator[WooCommerceStandIn]:
    keys = {
        CONSUMER_KEY: (CONSUMER_SECRET, "read_write"),
        READ_ONLY_KEY: (READ_ONLY_SECRET, "read"),
    }
    stand_in = WooCommerceStandIn(keys).start()
    yield stand_in
    stand_in.stop()


@pytest.fixture
def woo(woo_session: WooCommerceStandIn) -> WooCommerceStandIn:
    woo_session.reset()
    return woo_session


@pytest.fixture
def live_services(settings, live_server: str) -> Iterator[Services]:  # type: ignore[no-untyped-def]
    """The test services, with ``APP_URL`` set to where the app really listens."""
    built = build_services(settings.with_overrides(app_url=live_server))
    yield built
    built.db.dispose()


@pytest.fixture
def connector(settings) -> Connector:  # type: ignore[no-untyped-def]
    """``connector ARGS`` in-process, sharing the test database; ``app_url`` sets APP_URL,
    other keywords set environment variables."""

    def run(
        *args: str, app_url: str | None = None, **env_changes: str
    ) -> subprocess.CompletedProcess:
        if app_url:
            env_changes["APP_URL"] = app_url
        return invoke_connector(settings, *args, **env_changes)

    return run

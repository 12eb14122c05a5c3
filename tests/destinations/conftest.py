"""Fixtures the destination tests share."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from connector.config import Settings
from connector.services import Services, build_services
from connector.standins.google import GoogleStandIn
from tests.support import google_env


@pytest.fixture
def google_services(database_url: str, google: GoogleStandIn, tmp_path: Path) -> Iterator[Services]:
    """Services without Redis (token renewal and sending need none), pointed at Google's
    stand-in."""
    settings = Settings(
        instance_path=tmp_path / "instance",
        database_url=database_url,
        redis_url=None,
        secret_key="test-secret-key",
        token_encryption_key=None,
        app_url="http://connector.test",
        http_timeout_seconds=3.0,
    )
    services = build_services(google_env(settings, google))
    yield services
    services.db.dispose()

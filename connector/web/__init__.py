"""Web layer: blueprints and the helpers store platforms use to answer webhooks."""

from __future__ import annotations

from flask import current_app

from connector.services import Services

EXTENSION_KEY = "connector"
# The app's store platforms by name (connector.plugins.StorePlatform), for their page panels.
PLATFORMS_KEY = "connector.platforms"
# Store platforms name their webhook blueprint "<platform>_webhooks"; metrics rely on it.
WEBHOOK_BLUEPRINT_SUFFIX = "_webhooks"


def services() -> Services:
    """The services of the app handling the current request."""
    return current_app.extensions[EXTENSION_KEY]

"""Helpers shared by the ``connector`` commands, including those store platforms add."""

from __future__ import annotations

import json
from typing import Any

import click

from connector.config import ConfigError, Settings, load_settings
from connector.services import Services, build_services


class LazyServices:
    """Builds the services on first use, so ``connector --help`` needs no database."""

    def __init__(self) -> None:
        self._settings: Settings | None = None
        self._services: Services | None = None

    def settings(self) -> Settings:
        """The settings, read once; a configuration error is a one-line message."""
        if self._settings is None:
            try:
                self._settings = load_settings()
            except ConfigError as exc:
                raise click.ClickException(str(exc)) from None
        return self._settings

    def get(self) -> Services:
        if self._services is None:
            self._services = build_services(self.settings())
        return self._services


def services_from(ctx: click.Context) -> Services:
    """The services of the running command."""
    return ctx.ensure_object(LazyServices).get()


def emit(data: dict[str, Any]) -> None:
    """Print one JSON object on one line: the machine-readable output of every command."""
    click.echo(json.dumps(data, default=str, sort_keys=False))

"""How store platforms plug in: each package under the top-level ``platforms/`` exposes
``PLATFORM``, a :class:`StorePlatform`. The core never imports a platform by name; the app
factory and the command line load them all here, so a new store platform is one new folder.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass

import click
from flask import Blueprint

from connector.services import Services

PLATFORMS_PACKAGE = "platforms"


@dataclass(frozen=True)
class PeriodicTask:
    """Work a worker does every so often (one worker per period, whatever their number)."""

    name: str
    every_seconds: float
    run: Callable[[Services], object]


@dataclass(frozen=True)
class EmbeddedHead:
    """What a store platform's admin needs in the ``<head>`` of the pages it frames (Shopify:
    App Bridge), and the script origins the pages' Content-Security-Policy must then allow."""

    html: str
    script_sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class StorePlatform:
    """A store platform: webhook routes, ``connector stores ...`` commands, periodic work, and
        what its merchants must do in their store that the Settings page shows (``settings_panel``
        returns HTML for one store, e.g. Shopify's custom pixel to paste), and for an admin that
    frames the pages, what they must load (``embedded_head``)."""

    name: str
    blueprint: Blueprint
    commands: tuple[click.Command, ...] = ()
    periodic: tuple[PeriodicTask, ...] = ()
    settings_panel: Callable[[Services, str], str] | None = None
    embedded_head: Callable[[Services], EmbeddedHead] | None = None


def load_store_platforms() -> list[StorePlatform]:
    """Every platform package, in name order."""
    package = importlib.import_module(PLATFORMS_PACKAGE)
    found = []
    for module in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        platform = getattr(
            importlib.import_module(f"{PLATFORMS_PACKAGE}.{module.name}"), "PLATFORM", None
        )
        if platform is not None:
            found.append(platform)
    return found

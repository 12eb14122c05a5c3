"""Constants and helpers the WooCommerce tests share."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.support import fixture_bytes

CONSUMER_KEY = "ck_" + "a1" * 20
CONSUMER_SECRET = "cs_" + "b2" * 20
READ_ONLY_KEY = "ck_" + "c3" * 20
READ_ONLY_SECRET = "cs_" + "d4" * 20
DATE_FIELDS = ("date_created", "date_modified", "date_paid", "date_completed")


def connect_args(url: str, key: str = CONSUMER_KEY, secret: str = CONSUMER_SECRET) -> list[str]:
    """``stores connect-woocommerce`` against a local (plain HTTP) stand-in."""
    return [
        "stores", "connect-woocommerce", "--url", url,
        "--consumer-key", key, "--consumer-secret", secret, "--allow-http",
    ]  # fmt: skip


def output(result: subprocess.CompletedProcess, *, status: int = 0) -> dict[str, Any]:
    """The one JSON object a command printed, after checking its exit status."""
    assert result.returncode == status, result.stderr
    [line] = result.stdout.splitlines()
    return json.loads(line)


def error_line(result: subprocess.CompletedProcess) -> str:
    """The single error line of a failed command (log lines left out)."""
    assert result.returncode == 1, result.stdout
    assert result.stdout == ""
    [line] = [line for line in result.stderr.splitlines() if " INFO " not in line]
    return line


def order(name: str, **changes: Any) -> dict[str, Any]:
    """A fixture order as just placed (TikTok refuses events older than 7 days), changed.

    Dates that are set move to three minutes ago; ``changes`` replace top-level fields.
    """
    payload = json.loads(fixture_bytes("woocommerce", name))
    moment = (datetime.now(UTC) - timedelta(minutes=3)).strftime("%Y-%m-%dT%H:%M:%S")
    for base in DATE_FIELDS:
        for key in (base, base + "_gmt"):
            if payload.get(key):
                payload[key] = moment
    payload.update(changes)
    return payload

"""Logging: stable event keys with ``key=value`` fields, as text or as JSON lines.

Every log call in the connector reads ``logger.info("delivery.attempt destination=%s ...")``:
a dotted event key, then fields. ``LOG_FORMAT=json`` turns each record into one JSON object
(``{"event": "delivery.attempt", "destination": "3", ...}``) for log platforms that index
fields. Messages never carry raw personal data: identifiers are hashed before anything logs.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, event key and its fields."""

    def format(self, record: logging.LogRecord) -> str:
        event, fields = split_message(record.getMessage())
        data = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": event,
            **fields,
        }
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


def split_message(message: str) -> tuple[str, dict[str, str]]:
    """``"a.b k=v x=y"`` -> ``("a.b", {"k": "v", "x": "y"})``; other text stays the event."""
    head, _, rest = message.partition(" ")
    pairs = [token.split("=", 1) for token in rest.split()]
    if not rest or any(len(pair) != 2 for pair in pairs):
        return message, {}
    return head, dict(pairs)  # type: ignore[arg-type]


def configure_logging(log_format: str, level: str, *, force: bool = True) -> None:
    """Send the connector's logs to stderr in the chosen format.

    ``force=False`` leaves a process whose logging is already set up alone: the app factory
    uses it, so a gunicorn worker gets our format while a test runner keeps its own capture.
    """
    root = logging.getLogger()
    if root.handlers and not force:
        return
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root.handlers[:] = [handler]
    root.setLevel(level.upper())

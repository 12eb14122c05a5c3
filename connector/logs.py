"""Logging: stable event keys with ``key=value`` fields, as text or as JSON lines.

Every log call in the connector reads ``logger.info("delivery.attempt destination=%s ...")``:
a dotted event key, then fields. ``LOG_FORMAT=json`` turns each record into one JSON object
(``{"event": "delivery.attempt", "destination": "3", ...}``) for log platforms that index
fields. Messages never carry raw personal data: identifiers are hashed before anything logs.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

FIELD_KEY = re.compile(r"(?:^|(?<=\s))([a-z_][a-z0-9_.-]*)=")
"""Where a ``key=`` field starts: at the start, or after a space."""
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
    """``"a.b k=v x=y"`` -> ``("a.b", {"k": "v", "x": "y"})``; other text stays the event.

    A value runs to the next `` key=``, so a reason in words (``reason=the body is nested
    too deeply``) stays one field instead of turning the whole line into free text.
    """
    head, _, rest = message.partition(" ")
    keys = list(FIELD_KEY.finditer(rest))
    if not keys or keys[0].start() != 0:
        return message, {}
    ends = [key.start() for key in keys[1:]] + [len(rest)]
    pairs = zip(keys, ends, strict=True)
    return head, {key.group(1): rest[key.end() : end].strip() for key, end in pairs}


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

"""Log records as JSON lines: the event key and its fields, indexable by a log platform."""

from __future__ import annotations

import json
import logging

from connector.logs import JsonFormatter, split_message


def record(message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord(
        "connector.webhooks", logging.WARNING, __file__, 1, message, args, None
    )


def test_event_key_and_fields_become_json():
    line = JsonFormatter().format(
        record("webhook.refused platform=%s status=%d reason=%s", "shopify", 401, "bad-hmac")
    )
    data = json.loads(line)
    assert data["event"] == "webhook.refused"
    assert (data["platform"], data["status"], data["reason"]) == ("shopify", "401", "bad-hmac")
    assert (data["level"], data["logger"]) == ("warning", "connector.webhooks")
    assert data["time"].endswith("+00:00")


def test_a_value_in_words_runs_to_the_next_field():
    message = "webhook.unreadable store=st_1 reason=the JSON body is nested too deeply topic=x/y"
    assert split_message(message) == (
        "webhook.unreadable",
        {"store": "st_1", "reason": "the JSON body is nested too deeply", "topic": "x/y"},
    )


def test_free_text_stays_whole():
    assert split_message("something odd happened") == ("something odd happened", {})
    assert split_message("sweep.failed") == ("sweep.failed", {})

"""Reconciliation's platform-neutral parts: when it runs, in what thread, and the ``--since``
forms. What a run records is tested against the store stand-ins (``tests/platforms/*/``)."""

from __future__ import annotations

import logging
import threading
from datetime import datetime

import pytest

from connector.config import load_settings
from connector.plugins import in_own_thread
from connector.reconcile import parse_since
from connector.worker import periodic_tasks
from tests.support import wait_until

NOW = datetime(2026, 12, 3, 12, 0, 0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2d", datetime(2026, 12, 1, 12, 0, 0)),
        ("12h", datetime(2026, 12, 3, 0, 0, 0)),
        ("30m", datetime(2026, 12, 3, 11, 30, 0)),
        ("2026-11-30", datetime(2026, 11, 30)),
        ("2026-11-30T08:00:00", datetime(2026, 11, 30, 8)),
        ("2026-11-30T08:00:00+02:00", datetime(2026, 11, 30, 6)),
        ("2026-11-30T08:00:00Z", datetime(2026, 11, 30, 8)),
    ],
)
def test_since_takes_an_age_or_an_iso_date_as_utc(text, expected):
    assert parse_since(text, now=lambda: NOW) == expected


@pytest.mark.parametrize("text", ["2 days", "2w", "-1d", "yesterday", ""])
def test_since_refuses_anything_else_and_says_what_it_takes(text):
    with pytest.raises(ValueError, match=r"neither an age \(2d, 12h, 30m\) nor an ISO date"):
        parse_since(text, now=lambda: NOW)


def test_the_interval_comes_from_the_environment_with_a_15_minute_default(tmp_path):
    base = {"CONNECTOR_INSTANCE_PATH": str(tmp_path)}
    assert load_settings(base).reconcile_interval_seconds == 900.0
    env = {**base, "RECONCILE_INTERVAL_SECONDS": "60"}
    assert load_settings(env).reconcile_interval_seconds == 60.0


def test_every_worker_schedules_reconciliation_at_the_configured_interval(services):
    services.settings = services.settings.with_overrides(reconcile_interval_seconds=42.0)
    [task] = [task for task in periodic_tasks(services) if task.name == "reconcile"]
    assert task.every_seconds == 42.0


def test_a_round_runs_in_its_own_thread_and_another_is_skipped_while_it_runs():
    release, rounds = threading.Event(), []

    def slow_round(services: object) -> None:
        rounds.append(threading.current_thread().name)
        release.wait(5)

    start = in_own_thread("slow", slow_round)
    start(None)  # returns at once, the round still running
    start(None)  # skipped
    wait_until(lambda: rounds == ["slow"])
    release.set()
    wait_until(lambda: started_again(start, rounds, 2))


def test_a_failing_round_is_logged_and_the_next_one_runs(caplog):
    rounds: list[int] = []

    def failing_round(services: object) -> None:
        rounds.append(1)
        raise RuntimeError("a bug in the task")

    start = in_own_thread("failing", failing_round)
    start(None)
    wait_until(lambda: "periodic.failed task=failing" in caplog.text)
    assert caplog.records[0].levelno == logging.ERROR
    wait_until(lambda: started_again(start, rounds, 2))


def started_again(start, rounds: list, count: int) -> bool:  # type: ignore[no-untyped-def]
    """Start rounds until ``count`` have run (a start while one runs is skipped)."""
    if len(rounds) < count:
        start(None)
    return len(rounds) >= count

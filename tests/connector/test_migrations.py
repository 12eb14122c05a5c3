"""The migrations build exactly the schema the models describe, on both databases, and
the signal mask names what an event carried."""

from __future__ import annotations

import json

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, text

from connector.db import MIGRATIONS
from connector.destinations import load_destinations
from connector.mapping import EventOptions, build_event
from connector.models import Base
from connector.signals import SIGNALS, signal_mask, signals_in
from tests.support import make_order


@pytest.mark.postgres
def test_migrated_schema_matches_the_models(database_url: str) -> None:
    engine = create_engine(database_url)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert differences == []


@pytest.mark.parametrize("kind", sorted(load_destinations()))
def test_signal_mask_round_trips(kind: str) -> None:
    """Every destination's user data gives a mask of the neutral signals it carried."""
    api = load_destinations()[kind]
    order = make_order("1")
    event = build_event(order, api, EventOptions(), name="x", event_id="1", order_id="1")
    names = signals_in(signal_mask(event.user, api.signal_keys))
    assert set(names) <= set(SIGNALS)
    assert "email" in names and "ip" in names
    assert signals_in(0) == []


def sqlite_at(tmp_path) -> tuple[str, Config]:
    """A new SQLite database and the Alembic configuration that migrates it."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url)
    return url, config


def test_0008_moves_the_ip_and_user_agent_of_unsent_events_out_of_their_payloads(tmp_path):
    """Rows recorded before 0008 hold them in the payload: an unsent one has them moved to
    the network column (delivery puts them back), a delivered one held none and is left."""
    url, config = sqlite_at(tmp_path)
    command.upgrade(config, "0007")
    engine = create_engine(url)
    user = {"email": "e" * 64, "ip": "203.0.113.7", "client_user_agent": "Mozilla/5.0"}
    with engine.begin() as connection:
        for id_, status, held in ((1, "pending", user), (2, "delivered", {"email": "e" * 64})):
            connection.execute(
                text(
                    "INSERT INTO events (id, store_id, destination, event_name, event_id, "
                    "source_topic, status, payload, event_time, received_at, attempts, "
                    "next_attempt_at) VALUES (:id, 's', 'tiktok', 'x', :id, 't', :status, "
                    ":payload, 0, '2026-12-01', 0, '2026-12-01')"
                ),
                {"id": id_, "status": status, "payload": json.dumps({"user": held, "value": 1})},
            )
    command.upgrade(config, "head")
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT id, payload, network FROM events ORDER BY id"))
        stored = {id_: (json.loads(payload), network) for id_, payload, network in rows}
    engine.dispose()
    assert stored[1][0] == {"user": {"email": "e" * 64}, "value": 1}
    assert json.loads(stored[1][1]) == {"ip": "203.0.113.7", "client_user_agent": "Mozilla/5.0"}
    assert stored[2] == ({"user": {"email": "e" * 64}, "value": 1}, None)


def test_0009_puts_the_pending_events_in_the_delivery_queue_and_back_out(tmp_path):
    """Rows pending before 0009 are found in the new queue; a downgrade drops it."""
    url, config = sqlite_at(tmp_path)
    command.upgrade(config, "0008")
    engine = create_engine(url)
    with engine.begin() as connection:
        for id_, status in ((1, "pending"), (2, "delivered"), (3, "pending")):
            connection.execute(
                text(
                    "INSERT INTO events (id, store_id, destination, event_name, event_id, "
                    "source_topic, status, payload, event_time, received_at, attempts, "
                    "next_attempt_at) VALUES (:id, 's', 'tiktok', 'x', :id, 't', :status, "
                    "'{}', 0, '2026-12-01', 0, '2026-12-01 00:00:0' || :id)"
                ),
                {"id": id_, "status": status},
            )
    command.upgrade(config, "head")
    with engine.connect() as connection:
        queued = connection.execute(
            text("SELECT event_id, next_attempt_at FROM pending_events ORDER BY event_id")
        ).all()
    command.downgrade(config, "0008")
    with engine.connect() as connection:
        tables = connection.execute(text("SELECT name FROM sqlite_master WHERE type = 'table'"))
        names = set(tables.scalars())
    engine.dispose()
    assert [(id_, str(due)) for id_, due in queued] == [
        (1, "2026-12-01 00:00:01"),
        (3, "2026-12-01 00:00:03"),
    ]
    assert "pending_events" not in names and "events" in names

"""The migrations build exactly the schema the models describe, on both databases, and
the signal mask names what an event carried."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

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

"""Fixtures for the fault-injection suite, and the table of counts it prints at the end.

Small sizes by default (CI); ``RELIABILITY_SIZE=2000 pytest tests/reliability`` for the
large run by hand.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from connector.stores import set_destination
from tests.reliability.rig import HEADER, Counts, Rig
from tests.support import PIXEL_CODE, TIKTOK_TOKEN

RESULTS: list[Counts] = []


@pytest.fixture
def rig(settings, services, shopify_store, tiktok, tmp_path) -> Iterator[Rig]:  # type: ignore[no-untyped-def]
    set_destination(
        services,
        shopify_store,
        kind="tiktok",
        values={"pixel_code": PIXEL_CODE, "access_token": TIKTOK_TOKEN},
    )
    built = Rig(settings, tiktok, tmp_path)
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def report(request):  # type: ignore[no-untyped-def]
    """Record a scenario's counts for the summary table; fails the test on any loss."""

    def record(counts: Counts) -> Counts:
        backend = request.node.callspec.params.get("backend", "")
        counts.scenario = f"{counts.scenario} [{backend}]"
        RESULTS.append(counts)
        assert counts.lost == 0, counts
        return counts

    return record


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    if RESULTS:
        terminalreporter.section("fault injection: counts per scenario")
        terminalreporter.write_line(HEADER)
        for counts in RESULTS:
            terminalreporter.write_line(counts.row())

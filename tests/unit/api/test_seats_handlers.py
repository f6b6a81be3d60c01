"""Seats' and usage's request handling without a database (tests/unit/api/harness.py); the ledger and its
arithmetic against PostgreSQL are in tests/integration/api/test_api_routes.py."""

from __future__ import annotations

import pytest

from services.api.auth import Role
from services.api.seats import SeatsController, UsageController

from .harness import harness, problem


@pytest.mark.parametrize("count", [0, -1, 1001, "two"])
def test_a_bad_seat_count_is_refused_before_any_change(count: object) -> None:
    with harness(SeatsController) as h:
        assert "count" in str(h.refused(h.client.post("/v1/seats/purchase", json={"count": count}), 422))
        h.refused(h.client.post("/v1/seats/release", json={"count": count}), 422)


def test_good_seat_changes_reach_the_change() -> None:
    with harness(SeatsController) as h:
        assert h.client.post("/v1/seats/purchase", json={"count": 3}).status_code == 202
        assert h.client.post("/v1/seats/release", json={"count": 1}).status_code == 202
        assert h.reached() == 2


def test_only_an_admin_buys_or_gives_back_seats() -> None:
    with harness(SeatsController, role=Role.SUPERVISOR) as h:
        h.refused(h.client.post("/v1/seats/purchase", json={"count": 1}), 403)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("from=2026-03-01T00:00:00Z&to=2026-02-01T00:00:00Z", "from"),
        ("from=0900-01-01T00:00:00Z", "from"),
        ("to=9999-01-01T00:00:00Z", "to"),
        ("from=yesterday", "from"),
    ],
)
def test_a_bad_usage_period_is_refused_before_a_read(query: str, field: str) -> None:
    with harness(UsageController) as h:
        assert field in str(problem(h.client.get(f"/v1/usage?{query}"), 422))

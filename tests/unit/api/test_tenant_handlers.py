"""The tenant's settings: request handling without a database (tests/unit/api/harness.py); signup and the
settings against PostgreSQL are in tests/integration/api/."""

from __future__ import annotations

import pytest

from services.api.auth import Role
from services.api.tenants import MeController

from .harness import harness


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"agent_grace_seconds": -1}, "agent_grace_seconds"),
        ({"monitor_notice": "shout"}, "monitor_notice"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_settings_are_refused_before_any_change(body: dict[str, object], field: str) -> None:
    with harness(MeController) as h:
        assert field in str(h.refused(h.client.patch("/v1/me/settings", json=body), 422))


def test_good_settings_reach_the_change_and_only_an_admin_sends_them() -> None:
    with harness(MeController) as h:
        assert h.client.patch("/v1/me/settings", json={"timezone": "Europe/Lisbon"}).status_code == 202
        assert h.reached() == 1
    with harness(MeController, role=Role.DEVELOPER) as h:
        h.refused(h.client.patch("/v1/me/settings", json={"timezone": "UTC"}), 403)

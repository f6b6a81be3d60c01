"""Calling settings' request handling without a database (tests/unit/api/harness.py); the SQL side (the
caller ID must be one of the tenant's numbers) is in tests/integration/api/test_api_routes.py."""

from __future__ import annotations

import pytest

from services.api.auth import Role
from services.api.calling import CallingSettingsController

from .harness import harness


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"caller_id": "555-1234"}, "caller_id"),
        ({"callback_mode": "whenever"}, "callback_mode"),
        ({"callback_attempts": 0}, "callback_attempts"),
        ({"callback_ring_seconds": 121}, "callback_ring_seconds"),
        ({"callback_retry_seconds": "soon"}, "callback_retry_seconds"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_settings_are_refused_before_any_change(body: dict[str, object], field: str) -> None:
    with harness(CallingSettingsController) as h:
        assert field in str(h.refused(h.client.put("/v1/calling-settings", json=body), 422))


def test_good_settings_reach_the_change() -> None:
    with harness(CallingSettingsController) as h:
        body = {"callback_mode": "customer_first", "caller_id": "+14155550100"}
        assert h.client.put("/v1/calling-settings", json=body).status_code == 202
        assert h.client.put("/v1/calling-settings", json={}).status_code == 202
        assert h.reached() == 2


@pytest.mark.parametrize("role", [Role.DEVELOPER, Role.SUPERVISOR])
def test_only_an_admin_replaces_calling_settings(role: Role) -> None:
    with harness(CallingSettingsController, role=role) as h:
        answer = h.refused(h.client.put("/v1/calling-settings", json={"callback_attempts": 2}), 403)
        assert role.value in answer["detail"]

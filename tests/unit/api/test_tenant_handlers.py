"""The tenant's settings: request handling without a database (tests/unit/api/harness.py); signup and the
settings against PostgreSQL are in tests/integration/api/."""

from __future__ import annotations

import pytest

from services.api.auth import Role
from services.api.tenants import MeController, SignupController
from services.kernel.config import Settings

from .harness import SECRET, harness, problem


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


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"company": "", "email": "owner@example.com"}, "company"),
        ({"company": "Acme", "email": "owner"}, "email"),
        ({"company": "Acme"}, "email"),
    ],
)
def test_a_bad_signup_is_refused_before_the_database(body: dict[str, object], field: str) -> None:
    with harness(SignupController) as h:
        assert field in str(problem(h.client.post("/v1/signup", json=body), 422))


def test_signups_are_limited_per_address_before_the_database() -> None:
    with harness(SignupController, settings=Settings(token_secret=SECRET, signup_rate_per_minute=2)) as h:
        bad = {"company": "", "email": "owner@example.com"}  # refused after the limit is counted
        for _ in range(2):
            problem(h.client.post("/v1/signup", json=bad), 422)
        refused = h.client.post("/v1/signup", json=bad)
        assert "2 sign-ups per minute" in problem(refused, 429)["detail"]
        assert 1 <= int(refused.headers["retry-after"]) <= 60

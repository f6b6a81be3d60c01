"""Agents' request handling without a database (tests/unit/api/harness.py); what the SQL does is in
tests/integration/api/."""

from __future__ import annotations

import uuid

import pytest

from services.api.agents import AgentController
from services.api.auth import Role

from .harness import harness, problem

GOOD = {"name": "Ada", "email": "ada@example.com"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**GOOD, "email": "not-an-email"}, "email"),
        ({**GOOD, "skills": {"Bad Name": 3}}, "skills"),
        ({**GOOD, "skills": {"billing": 11}}, "skills.billing"),
        ({**GOOD, "languages": ["english!"]}, "languages[0]"),
        ({**GOOD, "endpoint": "+12"}, "endpoint"),
        ({**GOOD, "voicemail_capacity": 11}, "voicemail_capacity"),
        ({**GOOD, "site_id": "nope"}, "site_id"),
        ({"name": "Ada"}, "email"),
    ],
)
def test_a_bad_agent_is_refused_before_any_change(body: dict[str, object], field: str) -> None:
    with harness(AgentController) as h:
        assert field in str(h.refused(h.client.post("/v1/agents", json=body), 422))


def test_an_agent_always_keeps_a_site() -> None:
    with harness(AgentController) as h:
        body = problem(h.client.patch(f"/v1/agents/{uuid.uuid4()}", json={"site_id": None}), 422)
        assert "always belongs to a site" in str(body)
        assert h.reached() == 0


def test_good_agent_requests_reach_the_change() -> None:
    with harness(AgentController) as h:
        created = {**GOOD, "skills": {"billing": 7}, "languages": ["en", "zh-HK"], "endpoint": "+15550100"}
        assert h.client.post("/v1/agents", json=created).status_code == 202
        assert h.client.patch(f"/v1/agents/{uuid.uuid4()}", json={"endpoint": None}).status_code == 202
        assert h.client.delete(f"/v1/agents/{uuid.uuid4()}").status_code == 202
        assert h.reached() == 3


def test_ids_that_are_not_uuids_name_no_agent() -> None:
    with harness(AgentController) as h:
        problem(h.client.get("/v1/agents/7"), 404)
        problem(h.client.delete("/v1/agents/x"), 404)
        assert h.reached() == 0


def test_only_an_admin_changes_agents() -> None:
    with harness(AgentController, role=Role.SUPERVISOR) as h:
        problem(h.client.post("/v1/agents", json=GOOD), 403)
        problem(h.client.patch(f"/v1/agents/{uuid.uuid4()}", json={"name": "B"}), 403)
        assert h.reached() == 0

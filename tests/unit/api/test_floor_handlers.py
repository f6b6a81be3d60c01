"""Floor control, stepping into a call and supervisors' scope: request handling without a database
(tests/unit/api/harness.py). What routing and the coordinator do with an accepted request is in
tests/e2e/first_call/test_supervisor_floor.py and test_supervisor_monitor.py; the SQL against PostgreSQL
in tests/integration/api/."""

from __future__ import annotations

import uuid

import pytest

from services.api.auth import Role
from services.api.floor import AgentFloorController, ContactFloorController
from services.api.supervision import ScopeController, SupervisionController

from .harness import harness, problem

LEG = str(uuid.uuid4())


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"state": "busy"}, "state"),
        ({"state": "away", "reason": ""}, "reason"),
        ({"state": "away", "reason": "x" * 65}, "reason"),
        ({"state": "available", "until": "noon"}, "until"),
    ],
)
def test_a_bad_presence_is_refused_before_the_database(body: dict[str, object], field: str) -> None:
    with harness(AgentFloorController, role=Role.SUPERVISOR) as h:
        assert field in str(problem(h.client.post(f"/v1/agents/{uuid.uuid4()}/state", json=body), 422))


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("queue", {"queue": ""}),
        ("queue", {"queue": "x" * 201}),
        ("queue", {}),
        ("pull", {"agent": ""}),
        ("pull", {"agent": "a@example.com", "now": True}),
    ],
)
def test_a_bad_contact_move_is_refused_before_the_database(path: str, body: dict[str, object]) -> None:
    with harness(ContactFloorController, role=Role.SUPERVISOR) as h:
        problem(h.client.post(f"/v1/contacts/{uuid.uuid4()}/{path}", json=body), 422)


def test_floor_targets_are_named_by_id() -> None:
    with harness(AgentFloorController, ContactFloorController) as h:
        assert (
            "agent" in problem(h.client.post("/v1/agents/bob/state", json={"state": "away"}), 404)["detail"]
        )
        for path, body in (("queue", {"queue": "Sales"}), ("front", None), ("pull", {})):
            assert "contact" in problem(h.client.post(f"/v1/contacts/c1/{path}", json=body), 404)["detail"]


def test_a_developer_key_does_not_control_the_floor() -> None:
    with harness(AgentFloorController, ContactFloorController, role=Role.DEVELOPER) as h:
        problem(h.client.post(f"/v1/agents/{uuid.uuid4()}/state", json={"state": "away"}), 403)
        problem(h.client.post(f"/v1/contacts/{uuid.uuid4()}/front"), 403)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"mode": "listen"}, "leg_id"),
        ({"mode": "listen", "leg_id": LEG, "phone": "sip:me@desk.example"}, "leg_id"),
        ({"mode": "none", "phone": "sip:me@desk.example"}, "phone"),
        ({"mode": "listen", "phone": "tel:+15550100"}, "phone"),
        ({"mode": "shout", "leg_id": LEG}, "mode"),
        ({"mode": "listen", "leg_id": "leg-1"}, "leg_id"),
    ],
)
def test_a_bad_monitor_request_is_refused_before_the_database(body: dict[str, object], field: str) -> None:
    with harness(SupervisionController, role=Role.SUPERVISOR) as h:
        assert field in str(problem(h.client.post(f"/v1/contacts/{uuid.uuid4()}/monitor", json=body), 422))


def test_only_supervisors_and_admins_monitor() -> None:
    with harness(SupervisionController, role=Role.DEVELOPER) as h:
        problem(
            h.client.post(f"/v1/contacts/{uuid.uuid4()}/monitor", json={"mode": "listen", "leg_id": LEG}), 403
        )
    with harness(SupervisionController) as h:
        problem(h.client.post("/v1/contacts/c1/monitor", json={"mode": "listen", "leg_id": LEG}), 404)


def test_a_supervisors_scope_reaches_the_change_and_only_an_admin_sets_it() -> None:
    queue = str(uuid.uuid4())
    with harness(ScopeController) as h:
        assert (
            h.client.put(f"/v1/supervisors/{uuid.uuid4()}/queues", json={"queue_ids": [queue]}).status_code
            == 202
        )
        assert (
            h.client.put(f"/v1/supervisors/{uuid.uuid4()}/scope", json={"site_ids": None}).status_code == 202
        )
        assert h.reached() == 2
    with harness(ScopeController) as h:
        h.refused(h.client.put("/v1/supervisors/sam/queues", json={"queue_ids": None}), 404)
        h.refused(h.client.put(f"/v1/supervisors/{uuid.uuid4()}/queues", json={"queue_ids": ["q1"]}), 422)
        h.refused(h.client.put(f"/v1/supervisors/{uuid.uuid4()}/scope", json={"teams": []}), 422)
    with harness(ScopeController, role=Role.SUPERVISOR) as h:
        h.refused(h.client.put(f"/v1/supervisors/{uuid.uuid4()}/queues", json={"queue_ids": None}), 403)

"""Queues' request handling without a database (tests/unit/api/harness.py); what the SQL does (targets,
use by numbers and flows, forced deletes) is in tests/integration/api/."""

from __future__ import annotations

import uuid

import pytest

from services.api.auth import Role
from services.api.queues import QueueController

from .harness import harness, problem

TARGET = str(uuid.uuid4())


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "Q", "priority": 0}, "priority"),
        ({"name": "Q", "sl_percent": 101}, "sl_percent"),
        ({"name": "Q", "skills": {"billing": -1}}, "skills.billing"),
        ({"name": "Q", "overflow": [{"target_queue_id": TARGET}]}, "overflow[0]"),
        ({"name": "Q", "hours": {"funday": ["09:00-17:00"]}}, "hours.funday"),
        ({"name": "Q", "priority_rules": [{"attribute": "a b", "equals": "x", "raise_by": 5}]}, "attribute"),
        ({"name": "Q", "strategy": "random_walk"}, "strategy"),
    ],
)
def test_a_bad_queue_is_refused_before_any_change(body: dict[str, object], field: str) -> None:
    with harness(QueueController) as h:
        assert field in str(h.refused(h.client.post("/v1/queues", json=body), 422))


def test_good_queue_requests_reach_the_change() -> None:
    with harness(QueueController) as h:
        body = {
            "name": "Support",
            "priority": 70,
            "overflow": [{"target_queue_id": TARGET, "after_seconds": 60}],
            "hours": {"mon": ["09:00-17:00"]},
        }
        assert h.client.post("/v1/queues", json=body).status_code == 202
        assert h.client.patch(f"/v1/queues/{uuid.uuid4()}", json={"priority": 10}).status_code == 202
        assert h.client.delete(f"/v1/queues/{uuid.uuid4()}?force=true").status_code == 202
        assert h.reached() == 3


def test_ids_that_are_not_uuids_name_no_queue() -> None:
    with harness(QueueController) as h:
        problem(h.client.get("/v1/queues/support"), 404)
        problem(h.client.patch("/v1/queues/support", json={"priority": 10}), 404)
        assert h.reached() == 0


def test_only_an_admin_changes_queues() -> None:
    with harness(QueueController, role=Role.DEVELOPER) as h:
        problem(h.client.post("/v1/queues", json={"name": "Q"}), 403)
        problem(h.client.delete(f"/v1/queues/{uuid.uuid4()}"), 403)
        assert h.reached() == 0

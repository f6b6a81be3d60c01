"""Alert thresholds and the audit log: request handling without a database (tests/unit/api/harness.py); the
policies against PostgreSQL are in tests/integration/api/test_api_routes.py and the console feed's tests."""

from __future__ import annotations

import uuid

import pytest

from services.api.alert_policy import AlertPolicyController
from services.api.audit import AuditController
from services.api.auth import Role

from .harness import harness, problem


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"longest_wait_seconds": 0}, "longest_wait_seconds"),
        ({"longest_wait_seconds": 86_401}, "longest_wait_seconds"),
        ({"service_level_below_percent": 101}, "service_level_below_percent"),
        ({"waiting_over": "many"}, "waiting_over"),
        ({"away_over_percent": 50, "loudness": 3}, "loudness"),
    ],
)
def test_bad_thresholds_are_refused_before_any_change(body: dict[str, object], field: str) -> None:
    with harness(AlertPolicyController) as h:
        assert field in str(h.refused(h.client.put("/v1/alert-policy", json=body), 422))
        assert field in str(
            h.refused(h.client.put(f"/v1/alert-policy/queues/{uuid.uuid4()}", json=body), 422)
        )


def test_good_thresholds_reach_the_change() -> None:
    with harness(AlertPolicyController) as h:
        assert h.client.put("/v1/alert-policy", json={"waiting_over": 5}).status_code == 202
        assert h.client.put(f"/v1/alert-policy/queues/{uuid.uuid4()}", json={}).status_code == 202
        assert h.client.delete(f"/v1/alert-policy/queues/{uuid.uuid4()}").status_code == 202
        assert h.reached() == 3


def test_a_queue_that_is_not_an_id_is_not_found_before_any_change() -> None:
    with harness(AlertPolicyController) as h:
        assert "queue" in h.refused(h.client.put("/v1/alert-policy/queues/sales", json={}), 404)["detail"]
        h.refused(h.client.delete("/v1/alert-policy/queues/sales"), 404)


@pytest.mark.parametrize("role", [Role.SUPERVISOR, Role.DEVELOPER])
def test_only_an_admin_sets_thresholds(role: Role) -> None:
    with harness(AlertPolicyController, role=role) as h:
        h.refused(h.client.put("/v1/alert-policy", json={"waiting_over": 5}), 403)
        h.refused(h.client.delete(f"/v1/alert-policy/queues/{uuid.uuid4()}"), 403)


@pytest.mark.parametrize("role", [Role.SUPERVISOR, Role.DEVELOPER])
def test_only_an_admin_reads_the_audit_log(role: Role) -> None:
    with harness(AuditController, role=role) as h:
        problem(h.client.get("/v1/audit"), 403)


def test_a_bad_audit_page_is_refused_before_the_database() -> None:
    with harness(AuditController) as h:
        assert "cursor" in str(problem(h.client.get("/v1/audit?cursor=not-a-cursor"), 422))
        problem(h.client.get("/v1/audit?limit=0"), 422)

"""Webhook endpoints' request handling without a database (tests/unit/api/harness.py); delivery, signing
and replay against a local receiver are in tests/integration/reporting/test_webhooks.py."""

from __future__ import annotations

import uuid

import pytest

from services.api.auth import Role
from services.api.webhooks import WebhookController

from .harness import harness, problem


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://example.com/hook", "events": ["contact"]}, "url"),
        ({"url": "https://example.com/a hook", "events": ["contact"]}, "url"),
        ({"url": "https://example.com/hook", "events": []}, "events"),
        ({"url": "https://example.com/hook", "events": ["contact.teleported"]}, "events"),
    ],
)
def test_a_bad_endpoint_is_refused_before_any_change(body: dict[str, object], field: str) -> None:
    with harness(WebhookController) as h:
        assert field in str(h.refused(h.client.post("/v1/webhooks", json=body), 422))


def test_deliveries_filter_by_a_known_status_only() -> None:
    with harness(WebhookController) as h:
        assert "status" in str(problem(h.client.get("/v1/webhooks/deliveries?status=lost"), 422))
        problem(h.client.get("/v1/webhooks/deliveries?limit=501"), 422)


def test_removing_an_endpoint_reaches_the_change() -> None:
    with harness(WebhookController) as h:
        assert h.client.delete(f"/v1/webhooks/{uuid.uuid4()}").status_code == 202
        h.client.delete("/v1/webhooks/not-an-id")
        assert h.reached() == 1


@pytest.mark.parametrize("role", [Role.SUPERVISOR, Role.DEVELOPER])
def test_only_an_admin_manages_webhooks(role: Role) -> None:
    with harness(WebhookController, role=role) as h:
        h.refused(
            h.client.post("/v1/webhooks", json={"url": "https://example.com/h", "events": ["contact"]}), 403
        )
        problem(h.client.get("/v1/webhooks"), 403)


def test_a_replay_names_a_delivery_by_id_and_needs_an_admin() -> None:
    with harness(WebhookController) as h:
        assert "delivery" in problem(h.client.post("/v1/webhooks/deliveries/d1/replay"), 404)["detail"]
    with harness(WebhookController, role=Role.SUPERVISOR) as h:
        problem(h.client.post(f"/v1/webhooks/deliveries/{uuid.uuid4()}/replay"), 403)

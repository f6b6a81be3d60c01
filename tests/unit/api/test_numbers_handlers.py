"""Numbers' request handling without a database (tests/unit/api/harness.py); claims across tenants and
routing are in tests/integration/api/."""

from __future__ import annotations

import uuid

import pytest

from services.api.auth import Role
from services.api.numbers import NumberController

from .harness import harness, problem


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"e164": "5550100"}, "e164"),
        ({"e164": "+1-555-0100"}, "e164"),
        ({"e164": "+15550100", "queue_id": "support"}, "queue_id"),
        ({"e164": "+15550100", "flow": "x"}, "flow"),
        ({}, "e164"),
    ],
)
def test_a_bad_claim_is_refused_before_any_change(body: dict[str, object], field: str) -> None:
    with harness(NumberController) as h:
        assert field in str(h.refused(h.client.post("/v1/numbers", json=body), 422))


def test_good_number_requests_reach_the_change() -> None:
    with harness(NumberController) as h:
        assert h.client.post("/v1/numbers", json={"e164": "+15550100"}).status_code == 202
        assert h.client.patch(f"/v1/numbers/{uuid.uuid4()}", json={"queue_id": None}).status_code == 202
        assert h.client.delete(f"/v1/numbers/{uuid.uuid4()}").status_code == 202
        assert h.reached() == 3


def test_ids_that_are_not_uuids_name_no_number() -> None:
    with harness(NumberController) as h:
        problem(h.client.get("/v1/numbers/+15550100"), 404)
        problem(h.client.delete("/v1/numbers/1"), 404)
        assert h.reached() == 0


def test_only_an_admin_claims_or_releases_numbers() -> None:
    with harness(NumberController, role=Role.SUPERVISOR) as h:
        problem(h.client.post("/v1/numbers", json={"e164": "+15550100"}), 403)
        problem(h.client.delete(f"/v1/numbers/{uuid.uuid4()}"), 403)
        assert h.reached() == 0

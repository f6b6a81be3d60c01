"""API keys' request handling without a database (tests/unit/api/harness.py); creation, revocation and
their effect on authentication are in tests/integration/api/."""

from __future__ import annotations

import uuid

import pytest

from services.api.auth import Role
from services.api.keys import KeyController

from .harness import harness, problem


@pytest.mark.parametrize(
    ("body", "field"),
    [({"role": "owner"}, "role"), ({}, "role"), ({"role": "developer", "name": "   "}, "name")],
)
def test_a_bad_key_request_is_refused_before_any_change(body: dict[str, object], field: str) -> None:
    with harness(KeyController) as h:
        assert field in str(h.refused(h.client.post("/v1/keys", json=body), 422))


def test_good_key_requests_reach_the_change() -> None:
    with harness(KeyController) as h:
        assert h.client.post("/v1/keys", json={"role": "supervisor", "name": "wallboard"}).status_code == 202
        assert h.client.delete(f"/v1/keys/{uuid.uuid4()}").status_code == 202
        assert h.reached() == 2


@pytest.mark.parametrize("role", [Role.SUPERVISOR, Role.DEVELOPER])
def test_only_an_admin_sees_or_makes_keys(role: Role) -> None:
    with harness(KeyController, role=role) as h:
        problem(h.client.get("/v1/keys"), 403)  # reading keys is an admin's too (their names and roles)
        h.refused(h.client.post("/v1/keys", json={"role": "admin"}), 403)


def test_an_id_that_is_not_a_uuid_names_no_key() -> None:
    with harness(KeyController) as h:
        h.refused(h.client.delete("/v1/keys/sbk_abc"), 404)
        problem(h.client.get("/v1/keys/sbk_abc"), 404)

"""Contact history's request handling without a database (tests/unit/api/harness.py): filters and cursors
are checked before any read. The reads themselves are in tests/integration/api/test_api_contacts.py."""

from __future__ import annotations

import pytest

from services.api.auth import Role
from services.api.contacts import ContactController

from .harness import harness, problem


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("cursor=!!!", "cursor"),
        ("cursor=AAAA", "cursor"),
        ("since=yesterday", "since"),
        ("since=0001-01-01T00:00:00Z", "since"),
        ("caller=%2B1%00555", "caller"),
        ("queue=" + "q" * 101, "queue"),
        ("limit=0", "limit"),
    ],
)
def test_a_bad_filter_is_refused_before_a_read(query: str, field: str) -> None:
    with harness(ContactController) as h:
        assert field in str(problem(h.client.get(f"/v1/contacts?{query}"), 422))


def test_an_id_that_is_not_a_uuid_names_no_contact() -> None:
    with harness(ContactController) as h:
        assert "contact" in problem(h.client.get("/v1/contacts/42"), 404)["detail"]


@pytest.mark.parametrize("role", [Role.SUPERVISOR, Role.DEVELOPER])
def test_every_role_may_ask(role: Role) -> None:
    # Read-only: no guard. The harness's connection fails the test when used, so a filter error shows the
    # request got past the guard to validation.
    with harness(ContactController, role=role) as h:
        problem(h.client.get("/v1/contacts?cursor=%21"), 422)

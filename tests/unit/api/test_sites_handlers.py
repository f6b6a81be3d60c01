"""Sites' request handling without a database (tests/unit/api/harness.py); the SQL side is in
tests/integration/api/test_api_routes.py and test_api_bad_input.py."""

from __future__ import annotations

import uuid

import pytest

from services.api.auth import Role
from services.api.sites import SiteController

from .harness import harness, problem


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "   "}, "name"),
        ({"name": "S", "timezone": "Mars/Olympus"}, "timezone"),
        ({"name": "S", "kind": "castle"}, "kind"),
        ({"name": "S", "colour": "red"}, "colour"),
        ({"name": "x" * 101}, "name"),
    ],
)
def test_a_bad_site_is_refused_before_any_change(body: dict[str, object], field: str) -> None:
    with harness(SiteController) as h:
        answer = problem(h.client.post("/v1/sites", json=body), 422)
        assert field in str(answer), answer
        assert h.reached() == 0


def test_a_good_site_reaches_the_change() -> None:
    with harness(SiteController) as h:
        assert (
            h.client.post("/v1/sites", json={"name": "Lisbon", "timezone": "Europe/Lisbon"}).status_code
            == 202
        )
        assert h.client.patch(f"/v1/sites/{uuid.uuid4()}", json={"kind": "home"}).status_code == 202
        assert h.client.post(f"/v1/sites/{uuid.uuid4()}/drain").status_code == 202
        assert h.client.delete(f"/v1/sites/{uuid.uuid4()}").status_code == 202
        assert h.reached() == 4


def test_an_id_that_is_not_a_uuid_names_no_site() -> None:
    with harness(SiteController) as h:
        for response in (
            h.client.get("/v1/sites/not-an-id"),
            h.client.patch("/v1/sites/42", json={"name": "x"}),
            h.client.post("/v1/sites/nope/drain"),
            h.client.delete("/v1/sites/nope"),
        ):
            assert "site" in str(problem(response, 404)["detail"])
        assert h.reached() == 0


def test_a_bad_cursor_or_limit_is_refused_before_a_read() -> None:
    with harness(SiteController) as h:
        problem(h.client.get("/v1/sites?cursor=!!"), 422)
        problem(h.client.get("/v1/sites?limit=0"), 422)
        problem(h.client.get("/v1/sites?limit=201"), 422)


@pytest.mark.parametrize("role", [Role.DEVELOPER, Role.SUPERVISOR])
def test_only_an_admin_changes_sites(role: Role) -> None:
    with harness(SiteController, role=role) as h:
        assert role.value in str(problem(h.client.post("/v1/sites", json={"name": "S"}), 403)["detail"])
        problem(h.client.delete(f"/v1/sites/{uuid.uuid4()}"), 403)
        assert h.reached() == 0

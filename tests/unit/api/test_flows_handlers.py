"""IVR flows' request handling without a database (tests/unit/api/harness.py): what is refused before the
flow is validated against the tenant's queues, the offline simulator (it needs no database at all), the
lookup secret, and a number's route. Deploying against PostgreSQL: tests/integration/ivr/test_ivr_api.py."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from services.api.auth import Role
from services.api.flows import MAX_SOURCE_CHARS, FlowController, IvrController, NumberRouteController
from services.ivr.lookup import derive_secret

from .harness import SECRET, harness, problem

# The README's example flow (a menu, hours, a CRM lookup).
FLOW = (Path(__file__).resolve().parents[3] / "docs" / "examples" / "demo-flow.yaml").read_text()


def test_a_deploy_too_long_or_malformed_is_refused_before_any_change() -> None:
    with harness(FlowController) as h:
        too_long = {"definition": "x" * (MAX_SOURCE_CHARS + 1)}
        assert "definition" in str(h.refused(h.client.post("/v1/flows", json=too_long), 422))
        h.refused(h.client.post("/v1/flows", json={"definition": "n: x", "colour": "red"}), 422)
        h.refused(h.client.post("/v1/flows", json={"definition": 42}), 422)


def test_a_deploy_reaches_the_change() -> None:
    # The flow is validated inside the change (against the tenant's queues): the harness's change does not run.
    with harness(FlowController) as h:
        assert h.client.post("/v1/flows", json={"definition": FLOW}).status_code == 202
        assert h.client.post("/v1/flows", json={"definition": {"name": "x"}}).status_code == 202
        assert h.reached() == 2


@pytest.mark.parametrize("name", ["Not A Name", "-lead", "x" * 64])
def test_a_name_no_flow_can_have_names_nothing(name: str) -> None:
    with harness(FlowController) as h:
        for response in (
            h.client.get(f"/v1/flows/{name}"),
            h.client.get(f"/v1/flows/{name}/versions"),
            h.client.post(f"/v1/flows/{name}/rollback", json={"version": 1}),
            h.client.delete(f"/v1/flows/{name}"),
        ):
            problem(response, 404)
        assert h.reached() == 0


@pytest.mark.parametrize("version", ["0", "abc", "1000001", "-1"])
def test_a_version_that_is_not_a_number_names_nothing(version: str) -> None:
    with harness(FlowController) as h:
        assert "version" in problem(h.client.get(f"/v1/flows/hours/versions/{version}"), 404)["detail"]


def test_a_rollback_to_a_version_out_of_range_is_refused() -> None:
    with harness(FlowController) as h:
        h.refused(h.client.post("/v1/flows/hours/rollback", json={"version": 0}), 422)
        assert h.client.post("/v1/flows/hours/rollback", json={"version": 2}).status_code == 202


@pytest.mark.parametrize("role", [Role.DEVELOPER, Role.SUPERVISOR])
def test_only_an_admin_deploys_rolls_back_or_deletes(role: Role) -> None:
    with harness(FlowController, IvrController, role=role) as h:
        h.refused(h.client.post("/v1/flows", json={"definition": FLOW}), 403)
        h.refused(h.client.post("/v1/flows/hours/rollback", json={"version": 1}), 403)
        h.refused(h.client.delete("/v1/flows/hours"), 403)
        case = {"name": "c", "expect": {}}
        problem(h.client.post("/v1/ivr/simulate", json={"definition": FLOW, "cases": [case]}), 403)


def test_the_simulator_runs_a_flow_with_no_database() -> None:
    with harness(IvrController) as h:
        case = {"name": "silence", "expect": {"path_includes": ["welcome"]}}
        answer = h.client.post("/v1/ivr/simulate", json={"definition": FLOW, "cases": [case]})
        assert answer.status_code == 200, answer.text
        (result,) = answer.json()["results"]
        assert result["name"] == "silence" and result["ok"], result
        assert result["result"]["path"][0] == "welcome"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"definition": FLOW, "cases": []}, "cases"),
        ({"definition": "name: [", "cases": [{"name": "c", "expect": {}}]}, "definition"),
        ({"definition": FLOW, "cases": [{"name": "c", "at": "tea time", "expect": {}}]}, "cases[0]"),
        ({"definition": FLOW, "cases": [{"name": "c", "digits": "1", "expect": {}}]}, "digits"),
    ],
)
def test_a_bad_simulation_is_a_422(body: dict[str, object], field: str) -> None:
    with harness(IvrController) as h:
        assert field in str(problem(h.client.post("/v1/ivr/simulate", json=body), 422))


def test_the_lookup_secret_is_the_callers_tenants() -> None:
    with harness(IvrController, role=Role.DEVELOPER) as h:
        body = h.client.get("/v1/ivr/lookup-secret").json()
        assert body["secret"] == derive_secret(SECRET, h.principal.tenant_id).hex()
        assert body["algorithm"] == "HMAC-SHA256"


@pytest.mark.parametrize("ref", ["555-0100", "+0123456789", "not-a-number"])
def test_a_route_for_what_is_neither_an_id_nor_a_number_names_nothing(ref: str) -> None:
    with harness(NumberRouteController) as h:
        assert (
            "number"
            in h.refused(h.client.post(f"/v1/numbers/{ref}/route", json={"flow": "x"}), 404)["detail"]
        )


def test_a_route_reaches_the_change() -> None:
    with harness(NumberRouteController) as h:
        assert h.client.post("/v1/numbers/+14155550100/route", json={"flow": "hours"}).status_code == 202
        assert h.client.post(f"/v1/numbers/{uuid.uuid4()}/route", json={"queue": "sales"}).status_code == 202
        assert h.reached() == 2
        problem(h.client.post("/v1/numbers/+14155550100/route", json={"flow": "x" * 64}), 422)
        problem(h.client.post("/v1/numbers/+14155550100/route", json={"queue": ""}), 422)
        assert h.reached() == 2

"""Click-to-dial, the do-not-call list and agent tokens: request handling without a database
(tests/unit/api/harness.py); against PostgreSQL and the platform in tests/integration/api/ and the
outbound e2e tests."""

from __future__ import annotations

import uuid

import pytest

from services.api.auth import Role
from services.api.outbound import DialController, DoNotCallController
from services.api.tokens import TokenController
from services.kernel.config import Settings

from .harness import harness, problem


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"to": "5550100"}, "to"),
        ({"to": "+1555"}, "to"),
        ({"to": "+15550100", "caller_id": "reception"}, "caller_id"),
        ({"to": "+15550100", "ring": True}, "ring"),
    ],
)
def test_a_bad_dial_is_refused_before_the_database(body: dict[str, object], field: str) -> None:
    with harness(DialController) as h:
        assert field in str(problem(h.client.post(f"/v1/agents/{uuid.uuid4()}/dial", json=body), 422))


def test_a_dial_names_an_agent_by_id() -> None:
    with harness(DialController) as h:
        body = problem(h.client.post("/v1/agents/alice/dial", json={"to": "+15550100"}), 404)
        assert "agent" in body["detail"]


def test_a_supervisor_key_may_not_dial_whatever_it_sends() -> None:
    with harness(DialController, role=Role.SUPERVISOR) as h:
        assert (
            "admin or developer" in problem(h.client.post("/v1/agents/x/dial", content=b"{"), 403)["detail"]
        )


@pytest.mark.parametrize("number", ["5550100", "+1 555 0100", "+15550100x"])
def test_a_bad_number_is_not_added_to_the_do_not_call_list(number: str) -> None:
    with harness(DoNotCallController) as h:
        assert "e164" in str(h.refused(h.client.post("/v1/do-not-call", json={"e164": number}), 422))


def test_do_not_call_changes_reach_the_change_and_only_an_admin_makes_them() -> None:
    with harness(DoNotCallController) as h:
        assert (
            h.client.post("/v1/do-not-call", json={"e164": "+15550100", "note": "asked"}).status_code == 202
        )
        assert h.client.delete("/v1/do-not-call/+15550100").status_code == 202
        assert h.reached() == 2
        assert "not a number" in h.client.delete("/v1/do-not-call/bob").json()["detail"]
        assert h.reached() == 2
    with harness(DoNotCallController, role=Role.DEVELOPER) as h:
        h.refused(h.client.post("/v1/do-not-call", json={"e164": "+15550100"}), 403)
        h.refused(h.client.delete("/v1/do-not-call/+15550100"), 403)


def test_an_agent_token_needs_a_token_secret_an_admin_and_an_agent_id() -> None:
    with harness(TokenController, settings=Settings(token_secret="short")) as h:
        assert "token secret" in problem(h.client.post(f"/v1/agents/{uuid.uuid4()}/token"), 503)["detail"]
    with harness(TokenController, role=Role.SUPERVISOR) as h:
        problem(h.client.post(f"/v1/agents/{uuid.uuid4()}/token"), 403)
    with harness(TokenController) as h:
        assert "agent" in problem(h.client.post("/v1/agents/alice/token"), 404)["detail"]

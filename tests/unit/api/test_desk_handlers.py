"""The agent desk: request handling without a database (tests/unit/api/harness.py). The desk's reads and
voicemails against PostgreSQL are in tests/integration/api/ and the browser desk's e2e tests."""

from __future__ import annotations

import time
import uuid

import pytest

from services.api.auth import Role
from services.api.desk import DeskController, DeskSettingsController
from services.api.tokens import issue_agent_token, issue_widget_token

from .harness import SECRET, harness, problem

GOOD = {
    "dispositions": [{"code": "sold", "label": "Sold"}],
    "away_reasons": [{"code": "lunch", "label": "Lunch"}],
}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"dispositions": [], "away_reasons": []}, "dispositions"),
        ({**GOOD, "dispositions": [{"code": "Sold!", "label": "Sold"}]}, "dispositions[0].code"),
        (
            {**GOOD, "dispositions": [{"code": "a", "label": "A"}, {"code": "a", "label": "B"}]},
            "listed twice",
        ),
        ({**GOOD, "dispositions": [{"code": "a", "label": " "}]}, "dispositions[0].label"),
        ({**GOOD, "away_reasons": [{"code": "wrap_up", "label": "Wrap"}]}, "set by the platform"),
        ({**GOOD, "colour": "red"}, "colour"),
    ],
)
def test_bad_desk_settings_are_refused_before_any_change(body: dict[str, object], field: str) -> None:
    with harness(DeskSettingsController) as h:
        assert field in str(h.refused(h.client.put("/v1/desk-settings", json=body), 422))


def test_good_desk_settings_reach_the_change_and_only_an_admin_sends_them() -> None:
    with harness(DeskSettingsController) as h:
        assert h.client.put("/v1/desk-settings", json=GOOD).status_code == 202
        assert h.reached() == 1
    with harness(DeskSettingsController, role=Role.SUPERVISOR) as h:
        h.refused(h.client.put("/v1/desk-settings", json=GOOD), 403)


def _widget_token() -> str:
    token, _, _ = issue_widget_token(SECRET, uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), now=time.time())
    return token


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Basic YWxpY2U6c2VjcmV0",
        "Bearer ",
        "Bearer not-a-token",
        f"Bearer {issue_agent_token('another-secret-of-at-least-thirty-two-bytes', uuid.uuid4(), uuid.uuid4(), now=time.time())[0]}",
        f"Bearer {issue_agent_token(SECRET, uuid.uuid4(), uuid.uuid4(), now=time.time() - 3600)[0]}",
        "widget",
    ],
)
def test_the_desk_answers_only_to_a_valid_agent_token(authorization: str | None) -> None:
    if authorization == "widget":
        authorization = f"Bearer {_widget_token()}"
    headers = {"authorization": authorization} if authorization is not None else {}
    with harness(DeskController) as h:
        for path in ("/v1/desk", "/v1/desk/agents", f"/v1/desk/voicemails/{uuid.uuid4()}"):
            problem(h.client.get(path, headers=headers, follow_redirects=False), 401)

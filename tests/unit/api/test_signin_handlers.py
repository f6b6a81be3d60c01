"""Sign-in, invitations and forced sign-out: request handling without a database
(tests/unit/api/harness.py). Passwords, throttles, lockouts and refresh rotation against PostgreSQL are in
tests/integration/api/test_api_signin.py; the decisions alone in tests/unit/api/test_sessions.py."""

from __future__ import annotations

import uuid

import pytest

from services.api.auth import Role
from services.api.signin import COOKIE, AdminSignoutController, AuthController, InviteController

from .harness import harness, problem


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "not-an-email"}, "email"),
        ({"email": "a@example.com", "role": "owner"}, "role"),
        ({"email": "a@example.com", "team": "blue"}, "team"),
        ({}, "email"),
    ],
)
def test_a_bad_invitation_is_refused_before_any_change(body: dict[str, object], field: str) -> None:
    with harness(InviteController) as h:
        assert field in str(h.refused(h.client.post("/v1/invites", json=body), 422))


def test_an_invitation_reaches_the_change_and_only_an_admin_invites() -> None:
    with harness(InviteController) as h:
        assert (
            h.client.post("/v1/invites", json={"email": "Sam@Example.com", "role": "supervisor"}).status_code
            == 202
        )
        assert h.reached() == 1
    for role in (Role.SUPERVISOR, Role.DEVELOPER):
        with harness(InviteController, role=role) as h:
            h.refused(h.client.post("/v1/invites", json={"email": "sam@example.com"}), 403)


def test_a_forced_signout_names_an_agent_and_needs_a_supervisor() -> None:
    with harness(AdminSignoutController, role=Role.SUPERVISOR) as h:
        assert h.client.post(f"/v1/agents/{uuid.uuid4()}/signout").status_code == 202
        assert h.reached() == 1
    with harness(AdminSignoutController) as h:
        assert "agent" in h.refused(h.client.post("/v1/agents/alice/signout"), 404)["detail"]
    with harness(AdminSignoutController, role=Role.DEVELOPER) as h:
        h.refused(h.client.post(f"/v1/agents/{uuid.uuid4()}/signout"), 403)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/auth/signin", {"email": "a@example.com"}, "password"),
        ("/v1/auth/signin", {"email": "a@example.com", "password": "p" * 1025}, "password"),
        ("/v1/auth/signin", {"email": "a" * 255, "password": "secret"}, "email"),
        ("/v1/auth/signin", {"email": "a@example.com", "password": "x", "remember": True}, "remember"),
        ("/v1/auth/invite/lookup", {"token": "t" * 201}, "token"),
        ("/v1/auth/invite", {"token": "t", "password": "p" * 1025}, "password"),
        ("/v1/auth/invite", {"password": "long enough pass"}, "token"),
    ],
)
def test_bad_sign_in_bodies_are_refused_before_the_database(
    path: str, body: dict[str, object], field: str
) -> None:
    with harness(AuthController) as h:
        assert field in str(problem(h.client.post(path, json=body), 422))


@pytest.mark.parametrize(
    "headers", [{"origin": "https://evil.example"}, {"origin": "null"}, {"sec-fetch-site": "cross-site"}]
)
def test_another_sites_page_cannot_sign_in_refresh_or_sign_out(headers: dict[str, str]) -> None:
    with harness(AuthController) as h:
        h.client.cookies.set(COOKIE, f"{uuid.uuid4()}.secret", path="/v1/auth")
        for path in ("/v1/auth/signin", "/v1/auth/refresh", "/v1/auth/signout"):
            body = {"email": "a@example.com", "password": "long enough pass"}
            problem(h.client.post(path, json=body, headers=headers), 403)


@pytest.mark.parametrize("cookie", [None, "", "no-dot", "not-a-uuid.secret", f"{uuid.uuid4()}.", "x" * 201])
def test_a_refresh_without_a_well_formed_cookie_is_refused_before_the_database(cookie: str | None) -> None:
    with harness(AuthController) as h:
        if cookie is not None:
            h.client.cookies.set(COOKIE, cookie, path="/v1/auth")
        assert "sign in" in problem(h.client.post("/v1/auth/refresh"), 401)["detail"]


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_signing_out_without_a_session_clears_the_cookie_with_its_flags(scheme: str) -> None:
    with harness(AuthController) as h:
        response = h.client.post(f"{scheme}://testserver.local/v1/auth/signout")
        assert response.status_code == 200 and response.json() == {"sessions_ended": 0}
        cleared = response.headers["set-cookie"]
        assert cleared.startswith(f"{COOKIE}=") and "Max-Age=0" in cleared
        assert "HttpOnly" in cleared and "samesite=strict" in cleared.lower() and "Path=/v1/auth" in cleared
        assert ("Secure" in cleared) == (scheme == "https")

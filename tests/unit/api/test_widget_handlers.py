"""Widget keys' and widget tokens' request handling without a database (tests/unit/api/harness.py): what is
refused before a key is looked up. Keys and tokens against PostgreSQL: tests/integration/api/test_api_widget.py."""

from __future__ import annotations

import uuid
from contextlib import AbstractContextManager

import pytest

from services.api.auth import Role
from services.api.widget import WidgetKeyController, issue_widget_token_handler, widget_token_preflight
from services.kernel.config import Settings

from .harness import SECRET, Harness, harness, problem

GOOD_KEY = "pk_" + "a" * 32


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"queue_ids": []}, "queue_ids"),
        ({"queue_ids": ["not-a-uuid"]}, "queue_ids"),
        ({"queue_ids": [str(uuid.uuid4())], "origins": ["https://shop.example.com/cart"]}, "origins[0]"),
        ({"queue_ids": [str(uuid.uuid4())], "origins": ["ftp://shop.example.com"]}, "origins[0]"),
        ({"queue_ids": [str(uuid.uuid4())], "max_concurrent_calls": 0}, "max_concurrent_calls"),
        ({"queue_ids": [str(uuid.uuid4())], "name": "   "}, "name"),
        ({"queue_ids": [str(uuid.uuid4())], "colour": "red"}, "colour"),
    ],
)
def test_a_bad_widget_key_is_refused_before_any_change(body: dict[str, object], field: str) -> None:
    with harness(WidgetKeyController) as h:
        assert field in str(h.refused(h.client.post("/v1/widget-keys", json=body), 422))


def test_a_good_widget_key_and_a_revocation_reach_the_change() -> None:
    with harness(WidgetKeyController) as h:
        body = {
            "queue_ids": [str(uuid.uuid4())],
            "origins": ["https://Shop.Example.com:443/"],
            "flow": "main",
        }
        assert h.client.post("/v1/widget-keys", json=body).status_code == 202
        assert h.client.delete(f"/v1/widget-keys/{uuid.uuid4()}").status_code == 202
        assert h.reached() == 2
        problem(h.client.delete("/v1/widget-keys/pk_nope"), 404)
        problem(h.client.get("/v1/widget-keys/pk_nope"), 404)
        assert h.reached() == 2


@pytest.mark.parametrize("role", [Role.DEVELOPER, Role.SUPERVISOR])
def test_only_an_admin_creates_or_revokes_widget_keys(role: Role) -> None:
    with harness(WidgetKeyController, role=role) as h:
        h.refused(h.client.post("/v1/widget-keys", json={"queue_ids": [str(uuid.uuid4())]}), 403)
        h.refused(h.client.delete(f"/v1/widget-keys/{uuid.uuid4()}"), 403)


def _token_app(settings: Settings | None = None) -> AbstractContextManager[Harness]:
    return harness(widget_token_preflight, issue_widget_token_handler, settings=settings)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"key": "sk_live_secret", "queue": "sales"}, 401),
        ({"key": "pk_short", "queue": "sales"}, 401),
        ({"key": GOOD_KEY, "queue": "sa\x00les"}, 422),
        ({"key": GOOD_KEY}, 422),
        ({"key": GOOD_KEY, "queue": "sales", "extra": 1}, 422),
    ],
)
def test_a_bad_token_request_is_refused_before_the_key_is_looked_up(
    body: dict[str, object], status: int
) -> None:
    with _token_app() as h:
        problem(h.client.post("/v1/widget/token", json=body), status)


def test_no_token_secret_means_no_widget_tokens() -> None:
    with _token_app(Settings(token_secret="short")) as h:
        answer = problem(h.client.post("/v1/widget/token", json={"key": GOOD_KEY, "queue": "sales"}), 503)
        assert "token secret" in answer["detail"]


def test_widget_tokens_are_limited_per_client_address() -> None:
    with _token_app(Settings(token_secret=SECRET, widget_token_rate_per_minute=2)) as h:
        bad_key = {"key": "pk_short", "queue": "sales"}
        assert [h.client.post("/v1/widget/token", json=bad_key).status_code for _ in range(2)] == [401, 401]
        limited = h.client.post("/v1/widget/token", json=bad_key)
        assert "2 widget tokens per minute" in problem(limited, 429)["detail"]
        assert int(limited.headers["retry-after"]) >= 1


def test_the_preflight_grants_the_asking_origin_only_the_right_to_read() -> None:
    with _token_app() as h:
        answer = h.client.options("/v1/widget/token", headers={"Origin": "https://shop.example.com"})
        assert answer.status_code == 204
        assert answer.headers["access-control-allow-origin"] == "https://shop.example.com"
        assert answer.headers["access-control-allow-methods"] == "POST"
        bare = h.client.options("/v1/widget/token")
        assert bare.status_code == 204 and "access-control-allow-origin" not in bare.headers

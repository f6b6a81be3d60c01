"""SDK error mapping from RFC 9457 bodies, model decoding and cursor pagination (over httpx.MockTransport)."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
import switchboard

T0 = "2026-11-01T09:00:00Z"


def site(n: int) -> dict[str, object]:
    return {
        "id": f"site-{n}",
        "name": f"Site {n}",
        "timezone": "UTC",
        "kind": "office",
        "created_at": T0,
        "updated_at": T0,
    }


def client_with(handler: object) -> switchboard.Client:
    return switchboard.Client(api_key="sbk_test", transport=httpx.MockTransport(handler), max_retries=0)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (401, switchboard.AuthenticationError),
        (403, switchboard.PermissionDeniedError),
        (404, switchboard.NotFoundError),
        (409, switchboard.ConflictError),
        (413, switchboard.PayloadTooLargeError),
        (422, switchboard.ValidationError),
        (429, switchboard.RateLimitedError),
        (500, switchboard.ServerError),
        (418, switchboard.ApiError),
    ],
)
def test_status_maps_to_its_error_class(status: int, cls: type[switchboard.ApiError]) -> None:
    client = client_with(lambda r: httpx.Response(status, json={"title": "t", "status": status}))
    with pytest.raises(cls) as caught:
        client.seats.get()
    assert type(caught.value) is cls
    assert isinstance(caught.value, switchboard.SwitchboardError)
    assert caught.value.status == status


def test_validation_problem_carries_type_title_detail_and_field_errors() -> None:
    body = {
        "type": "https://switchboard.dev/problems/validation",
        "title": "Invalid request",
        "status": 422,
        "detail": "2 fields are not valid",
        "errors": [
            {"field": "email", "message": "must look like local@domain.tld"},
            {"field": "name", "message": "1-100 characters"},
        ],
    }
    client = client_with(lambda r: httpx.Response(422, json=body))
    with pytest.raises(switchboard.ValidationError) as caught:
        client.agents.create("", "nope")
    err = caught.value
    assert err.type == body["type"] and err.slug == "validation"
    assert err.title == "Invalid request" and err.detail == "2 fields are not valid"
    assert [(e.field, e.message) for e in err.errors] == [
        ("email", "must look like local@domain.tld"),
        ("name", "1-100 characters"),
    ]
    assert (
        str(err)
        == "2 fields are not valid: email: must look like local@domain.tld; name: 1-100 characters (422)"
    )


def test_non_json_error_body_still_gives_a_typed_error() -> None:
    client = client_with(lambda r: httpx.Response(502, text="<html>Bad gateway</html>"))
    with pytest.raises(switchboard.ServerError) as caught:
        client.me()
    assert caught.value.status == 502 and "Bad gateway" in caught.value.detail


def test_models_decode_documented_objects_and_ignore_new_fields() -> None:
    me = {
        "tenant": {
            "id": "t1",
            "name": "Acme",
            "admin_email": "a@acme.example",
            "plan": "trial",
            "created_at": T0,
            "brand_new_field": True,
        },
        "key": {
            "id": "k1",
            "name": "",
            "role": "admin",
            "prefix": "sbk_abcd",
            "created_at": T0,
            "revoked_at": None,
            "last_used_at": T0,
        },
    }
    client = client_with(lambda r: httpx.Response(200, json=me))
    result = client.me()
    assert result.tenant.name == "Acme" and result.key.role == "admin"
    assert result.tenant.created_at == datetime(2026, 11, 1, 9, tzinfo=UTC)
    assert switchboard.to_dict(result)["tenant"] == {
        k: v for k, v in me["tenant"].items() if k != "brand_new_field"
    }


def test_usage_keeps_the_api_field_names_from_and_to() -> None:
    usage = {
        "from": T0,
        "to": "2026-11-02T09:00:00Z",
        "seat_seconds": 172800,
        "seat_hours": 48.0,
        "intervals": [{"from": T0, "to": "2026-11-02T09:00:00Z", "seats": 2, "seconds": 86400}],
    }
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=usage)

    report = client_with(handler).usage(datetime(2026, 11, 1, 9), "2026-11-02T09:00:00Z")
    assert report.seat_hours == 48.0 and report.intervals[0].seats == 2
    assert seen[0].url.params["from"] == "2026-11-01T09:00:00+00:00"
    assert switchboard.to_dict(report)["from"] == T0


def test_wrong_shape_answer_is_a_response_error_not_a_crash() -> None:
    client = client_with(lambda r: httpx.Response(200, json={"purchased": "many"}))
    with pytest.raises(switchboard.ResponseError, match="GET /v1/seats"):
        client.seats.get()


def test_iter_follows_next_cursor_until_it_is_null() -> None:
    seen: list[httpx.QueryParams] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.params)
        cursor = request.url.params.get("cursor")
        if cursor is None:
            return httpx.Response(200, json={"items": [site(1), site(2)], "next_cursor": "c2"})
        if cursor == "c2":
            return httpx.Response(200, json={"items": [site(3)], "next_cursor": "c3"})
        return httpx.Response(200, json={"items": [], "next_cursor": None})

    client = client_with(handler)
    assert [s.id for s in client.sites.iter(page_size=2)] == ["site-1", "site-2", "site-3"]
    assert [p.get("cursor") for p in seen] == [None, "c2", "c3"]
    assert all(p["limit"] == "2" for p in seen)

    page = client.sites.list(limit=2)
    assert [s.id for s in page.items] == ["site-1", "site-2"] and page.next_cursor == "c2"
    everything = client.sites.list(all=True)
    assert len(everything.items) == 3 and everything.next_cursor is None


def test_a_cursor_that_never_advances_is_an_error_not_a_loop() -> None:
    client = client_with(lambda r: httpx.Response(200, json={"items": [site(1)], "next_cursor": "same"}))
    with pytest.raises(switchboard.ResponseError, match="same cursor"):
        list(client.sites.iter())


async def test_async_iter_follows_cursors() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("cursor") == "next":
            return httpx.Response(200, json={"items": [site(2)], "next_cursor": None})
        return httpx.Response(200, json={"items": [site(1)], "next_cursor": "next"})

    async with switchboard.AsyncClient(api_key="k", transport=httpx.MockTransport(handler)) as client:
        assert [s.id async for s in client.sites.iter()] == ["site-1", "site-2"]
        assert len((await client.sites.list(all=True)).items) == 2


def test_update_sends_only_the_fields_given_and_none_clears() -> None:
    bodies: list[bytes] = []
    number = {
        "id": "n1",
        "e164": "+15550100",
        "queue_id": None,
        "flow_id": None,
        "created_at": T0,
        "updated_at": T0,
    }

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(request.content)
        return httpx.Response(200, json=number if "numbers" in request.url.path else site(1))

    client = client_with(handler)
    client.numbers.update("n1", queue_id=None)
    client.sites.update("s1", name="Home")
    assert bodies == [b'{"queue_id":null}', b'{"name":"Home"}']


def test_signup_sends_no_authorization_header() -> None:
    seen: list[httpx.Request] = []
    answer = {
        "tenant": {
            "id": "t",
            "name": "Acme",
            "admin_email": "a@acme.example",
            "plan": "trial",
            "created_at": T0,
        },
        "api_key": {
            "id": "k",
            "name": "admin",
            "role": "admin",
            "prefix": "sbk_abcd",
            "created_at": T0,
            "revoked_at": None,
            "last_used_at": None,
            "key": "sbk_" + "x" * 43,
        },
        "seats": {"purchased": 2, "logged_in": 0, "available": 2, "plan": "trial"},
    }

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json=answer)

    result = client_with(handler).signup("Acme", "a@acme.example")
    assert result.api_key.key.startswith("sbk_") and result.seats.purchased == 2
    assert "authorization" not in seen[0].headers and seen[0].url.path == "/v1/signup"


def test_version_is_exported() -> None:
    assert switchboard.__version__ and switchboard.__version__[0].isdigit()

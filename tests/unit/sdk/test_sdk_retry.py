"""SDK retry, backoff and idempotency-key logic: the pure policy, then both clients over httpx.MockTransport.

MockTransport stands in for the network only to drive the SDK's own decisions (how many attempts, which
headers, how long it waits); the real API is exercised in tests/integration/cli.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
import switchboard
from switchboard import RetryPolicy

SEATS = {"purchased": 5, "logged_in": 0, "available": 5, "plan": "paid"}


def problem(status: int, slug: str, detail: str = "", **extra: Any) -> httpx.Response:
    body = {"type": f"https://switchboard.dev/problems/{slug}", "title": slug.title(), "status": status}
    if detail:
        body["detail"] = detail
    body.update(extra)
    return httpx.Response(status, json=body, headers={"content-type": "application/problem+json"})


class Script:
    """Answers requests from a list in order and records what was sent."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def client_for(
    script: Callable[[httpx.Request], httpx.Response], **kwargs: Any
) -> tuple[switchboard.Client, list[float]]:
    client = switchboard.Client(api_key="sbk_test", transport=httpx.MockTransport(script), **kwargs)
    sleeps: list[float] = []
    client._sleep = sleeps.append
    client._random = lambda: 0.5
    return client, sleeps


# The policy alone ---------------------------------------------------------------------------------------


def test_backoff_grows_exponentially_within_jitter_bounds_and_is_capped() -> None:
    policy = RetryPolicy(backoff_base=1.0, backoff_max=8.0)
    assert [policy.backoff(n, 0.0) for n in range(5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert [policy.backoff(n, 1.0) for n in range(5)] == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert policy.backoff(1, 0.5) == 1.5


def test_policy_retries_429_and_5xx_but_never_other_4xx() -> None:
    policy = RetryPolicy(max_retries=3)
    for status in (400, 401, 403, 404, 409, 413, 422):
        assert policy.after_status(0, "POST", status, retry_after=None, rand=0.5) is None
    assert policy.after_status(0, "GET", 500, retry_after=None, rand=0.5) is not None
    assert policy.after_status(0, "POST", 503, retry_after=None, rand=0.5) is not None
    assert policy.after_status(0, "POST", 429, retry_after=None, rand=0.5) is not None


def test_policy_stops_after_max_retries() -> None:
    policy = RetryPolicy(max_retries=2)
    assert policy.after_status(1, "GET", 503, retry_after=None, rand=0.5) is not None
    assert policy.after_status(2, "GET", 503, retry_after=None, rand=0.5) is None
    assert policy.after_transport_error(2, "GET", sent=False, rand=0.5) is None
    assert RetryPolicy(max_retries=0).after_status(0, "GET", 503, retry_after=None, rand=0.5) is None


def test_policy_honours_retry_after_and_gives_up_when_it_is_too_long() -> None:
    policy = RetryPolicy(max_retry_after=30)
    assert policy.after_status(0, "POST", 429, retry_after=7.0, rand=0.0) == 7.0
    assert policy.after_status(0, "POST", 429, retry_after=31.0, rand=0.0) is None
    # On a 503 the longer of backoff and Retry-After wins.
    assert policy.after_status(0, "GET", 503, retry_after=3.0, rand=0.0) == 3.0


def test_policy_repeats_a_possibly_applied_request_only_when_repeating_is_harmless() -> None:
    policy = RetryPolicy()
    # Never connected: nothing can have been applied, any method may be repeated.
    assert policy.after_transport_error(0, "DELETE", sent=False, rand=0.5) is not None
    # Sent, then the connection failed: GET and POST (idempotency key) may repeat, DELETE/PATCH may not.
    assert policy.after_transport_error(0, "GET", sent=True, rand=0.5) is not None
    assert policy.after_transport_error(0, "POST", sent=True, rand=0.5) is not None
    assert policy.after_transport_error(0, "DELETE", sent=True, rand=0.5) is None
    assert policy.after_transport_error(0, "PATCH", sent=True, rand=0.5) is None
    assert policy.after_status(0, "DELETE", 500, retry_after=None, rand=0.5) is None
    assert policy.after_status(0, "DELETE", 503, retry_after=None, rand=0.5) is not None


def test_retry_after_parses_seconds_and_http_dates() -> None:
    assert switchboard.errors.parse_retry_after("12", now=0) == 12.0
    assert switchboard.errors.parse_retry_after(None, now=0) is None
    assert switchboard.errors.parse_retry_after("soon", now=0) is None
    # Thu, 01 Jan 1970 00:01:40 GMT is epoch 100.
    assert switchboard.errors.parse_retry_after("Thu, 01 Jan 1970 00:01:40 GMT", now=40.0) == 60.0


# The sync client ----------------------------------------------------------------------------------------


def test_retried_post_reuses_one_idempotency_key_and_a_new_call_gets_a_new_one() -> None:
    script = Script(
        problem(503, "unavailable"),
        httpx.ConnectError("refused"),
        httpx.Response(200, json=SEATS),
        httpx.Response(200, json=SEATS),
    )
    client, sleeps = client_for(script)
    seats = client.seats.purchase(3)
    assert seats.purchased == 5 and seats.plan == "paid"
    first_call = script.requests[:3]
    keys = {r.headers["idempotency-key"] for r in first_call}
    assert len(keys) == 1 and len(next(iter(keys))) == 36
    assert all(r.content == b'{"count":3}' for r in first_call)
    assert len(sleeps) == 2
    client.seats.purchase(3)
    assert script.requests[3].headers["idempotency-key"] not in keys


def test_caller_may_fix_the_idempotency_key() -> None:
    script = Script(httpx.Response(200, json=SEATS))
    client, _ = client_for(script)
    client.seats.release(1, idempotency_key="order-42")
    assert script.requests[0].headers["idempotency-key"] == "order-42"


def test_get_and_delete_carry_no_idempotency_key() -> None:
    script = Script(httpx.Response(200, json=SEATS), httpx.Response(204))
    client, _ = client_for(script)
    client.seats.get()
    client.agents.delete("0190e8a4-0000-7000-8000-000000000001")
    assert all("idempotency-key" not in r.headers for r in script.requests)
    assert script.requests[1].method == "DELETE"
    assert script.requests[0].headers["authorization"] == "Bearer sbk_test"


def test_429_waits_as_long_as_retry_after_says() -> None:
    limited = problem(429, "rate-limited", "slow down")
    limited.headers["Retry-After"] = "2"
    script = Script(limited, httpx.Response(200, json=SEATS))
    client, sleeps = client_for(script)
    client.seats.get()
    assert sleeps == [2.0]


def test_429_beyond_max_retries_raises_rate_limited_with_retry_after() -> None:
    answers = []
    for _ in range(3):
        r = problem(429, "rate-limited", "10 signups per minute")
        r.headers["Retry-After"] = "1"
        answers.append(r)
    script = Script(*answers)
    client, sleeps = client_for(script, max_retries=2)
    with pytest.raises(switchboard.RateLimitedError) as caught:
        client.seats.get()
    assert caught.value.retry_after == 1.0 and caught.value.status == 429
    assert len(script.requests) == 3 and sleeps == [1.0, 1.0]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422])
def test_other_4xx_are_never_retried(status: int) -> None:
    script = Script(problem(status, "nope", "refused"))
    client, sleeps = client_for(script)
    with pytest.raises(switchboard.ApiError):
        client.seats.purchase(1)
    assert len(script.requests) == 1 and sleeps == []


def test_persistent_5xx_raises_server_error_after_all_attempts() -> None:
    script = Script(*(problem(500, "internal", "boom") for _ in range(4)))
    client, sleeps = client_for(script, max_retries=3)
    with pytest.raises(switchboard.ServerError) as caught:
        client.sites.list()
    assert caught.value.status == 500 and len(script.requests) == 4
    # Backoff doubles between attempts (random fixed at 0.5: 0.75 of each step).
    assert sleeps == pytest.approx([0.1875, 0.375, 0.75])


def test_unreachable_api_raises_connection_error_after_retries() -> None:
    script = Script(*(httpx.ConnectError("Connection refused") for _ in range(3)))
    client, sleeps = client_for(script, max_retries=2)
    with pytest.raises(switchboard.ConnectionError) as caught:
        client.me()
    assert caught.value.base_url == "http://127.0.0.1:8080"
    assert "Connection refused" in caught.value.reason
    assert len(script.requests) == 3 and len(sleeps) == 2


def test_read_timeout_on_delete_is_not_repeated() -> None:
    script = Script(httpx.ReadTimeout("slow"))
    client, _ = client_for(script)
    with pytest.raises(switchboard.ConnectionError) as caught:
        client.sites.delete("0190e8a4-0000-7000-8000-000000000001")
    assert len(script.requests) == 1 and "no answer within 10 s" in str(caught.value)


def test_bad_base_url_is_refused_at_once() -> None:
    with pytest.raises(ValueError, match="http"):
        switchboard.Client(base_url="localhost:8080")


def test_empty_id_is_refused_before_any_request() -> None:
    script = Script()
    client, _ = client_for(script)
    with pytest.raises(ValueError):
        client.agents.get(" ")
    assert script.requests == []


def test_ids_are_quoted_into_one_path_segment() -> None:
    script = Script(problem(404, "not-found", "no such agent"))
    client, _ = client_for(script)
    with pytest.raises(switchboard.NotFoundError):
        client.agents.get("../keys")
    assert script.requests[0].url.raw_path == b"/v1/agents/..%2Fkeys"


# The async client ---------------------------------------------------------------------------------------


async def test_async_client_retries_with_the_same_idempotency_key() -> None:
    script = Script(problem(502, "bad-gateway"), httpx.Response(200, json=SEATS))
    client = switchboard.AsyncClient(api_key="sbk_test", transport=httpx.MockTransport(script))
    sleeps: list[float] = []

    async def record(delay: float) -> None:
        sleeps.append(delay)

    client._sleep = record
    async with client:
        seats = await client.seats.purchase(2)
    assert seats.available == 5
    assert len(sleeps) == 1
    first, second = script.requests
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"]


async def test_async_client_maps_errors_like_the_sync_one() -> None:
    script = Script(problem(409, "conflict", "3 agents are logged in, 2 seats would remain"))
    async with switchboard.AsyncClient(api_key="sbk_test", transport=httpx.MockTransport(script)) as client:
        with pytest.raises(switchboard.ConflictError) as caught:
            await client.seats.release(3)
    assert str(caught.value) == "3 agents are logged in, 2 seats would remain (409)"

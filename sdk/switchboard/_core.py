"""The sans-IO core shared by Client and AsyncClient: what a call is, headers, decoding, and when to retry.

Nothing here touches a socket or a clock: the two clients own the I/O and pass in the time and the random
numbers, so the retry rules are tested with plain values.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import msgspec

from .errors import ResponseError

__all__ = [
    "DEFAULT_BASE_URL",
    "REPEAT_SAFE_METHODS",
    "Call",
    "RetryPolicy",
    "decode_result",
    "encode_body",
    "headers_for",
    "new_idempotency_key",
    "resolve_api_key",
    "resolve_base_url",
]

T = TypeVar("T")

DEFAULT_BASE_URL = "http://127.0.0.1:8080"

# Methods whose repetition cannot apply a change twice. POST joins them because every POST carries an
# Idempotency-Key that the API uses to answer a repeat with the stored first response.
REPEAT_SAFE_METHODS = frozenset({"GET", "HEAD", "POST"})
# Gateway-style answers: the request was not processed, so even DELETE and PATCH may be repeated.
_NOT_PROCESSED = frozenset({502, 503, 504})


@dataclass(frozen=True)
class Call(Generic[T]):
    """One logical API call. `result` is the type to decode the answer into (None: no body expected)."""

    method: str
    path: str
    result: Any = None
    params: dict[str, str] | None = None
    body: dict[str, Any] | None = None
    auth: bool = True
    # Generated once per logical call and reused by every retry of it (see RetryPolicy).
    idempotency_key: str | None = field(default=None)


def new_idempotency_key() -> str:
    return str(uuid.uuid4())


def resolve_base_url(base_url: str | None) -> str:
    url = base_url or os.environ.get("SB_API_URL") or DEFAULT_BASE_URL
    return url.rstrip("/")


def resolve_api_key(api_key: str | None) -> str | None:
    return api_key or os.environ.get("SB_API_KEY") or None


def headers_for(call: Call[Any], *, api_key: str | None, user_agent: str) -> dict[str, str]:
    headers = {"Accept": "application/json", "User-Agent": user_agent}
    if call.auth and api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    if call.body is not None:
        headers["Content-Type"] = "application/json"
    if call.idempotency_key:
        headers["Idempotency-Key"] = call.idempotency_key
    return headers


def encode_body(call: Call[Any]) -> bytes | None:
    return None if call.body is None else msgspec.json.encode(call.body)


def decode_result(call: Call[T], status: int, content: bytes) -> T:
    """The typed value of a 2xx answer."""
    if call.result is None:
        return None  # type: ignore[return-value]
    try:
        return msgspec.json.decode(content, type=call.result)  # type: ignore[no-any-return]
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ResponseError(f"unexpected answer from {call.method} {call.path} ({status}): {exc}") from exc


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to wait before repeating a failed attempt.

    Retried: connection failures, 429 and 5xx, with exponential backoff and jitter, at most `max_retries`
    times. Never retried: any other 4xx (repeating a refused request gets the same refusal). A request
    that may have reached the API is repeated only when that is harmless (REPEAT_SAFE_METHODS), or when
    the answer says it was not processed (429, 502, 503, 504).
    """

    max_retries: int = 3
    backoff_base: float = 0.25
    backoff_max: float = 8.0
    # A Retry-After longer than this is not waited for: the error is raised and the caller decides.
    max_retry_after: float = 60.0

    def backoff(self, attempt: int, rand: float) -> float:
        """Equal jitter: half the exponential step fixed, half random, so clients spread out."""
        step = min(self.backoff_max, self.backoff_base * 2.0**attempt)
        return step / 2 + step / 2 * rand

    def after_transport_error(self, attempt: int, method: str, *, sent: bool, rand: float) -> float | None:
        """Delay before retry `attempt + 1` after a transport failure (None: give up).

        `sent` is False when the connection was never made, so the API cannot have seen the request.
        """
        if attempt >= self.max_retries:
            return None
        if sent and method.upper() not in REPEAT_SAFE_METHODS:
            return None
        return self.backoff(attempt, rand)

    def after_status(
        self, attempt: int, method: str, status: int, *, retry_after: float | None, rand: float
    ) -> float | None:
        """Delay before retry `attempt + 1` after an error status (None: raise it)."""
        if attempt >= self.max_retries:
            return None
        if status == 429:
            if retry_after is None:
                return self.backoff(attempt, rand)
            if retry_after > self.max_retry_after:
                return None
            return retry_after
        if status >= 500:
            if method.upper() not in REPEAT_SAFE_METHODS and status not in _NOT_PROCESSED:
                return None
            delay = self.backoff(attempt, rand)
            if retry_after is not None:
                if retry_after > self.max_retry_after:
                    return None
                delay = max(delay, retry_after)
            return delay
        return None

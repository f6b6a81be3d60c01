"""Typed errors: one class per kind of failure, API errors carrying the RFC 9457 problem details."""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import msgspec

__all__ = [
    "ApiError",
    "AuthenticationError",
    "ConflictError",
    "ConnectionError",
    "FieldError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RateLimitedError",
    "ResponseError",
    "ServerError",
    "SwitchboardError",
    "ValidationError",
    "error_from_response",
    "parse_retry_after",
]


class SwitchboardError(Exception):
    """Base of every error the SDK raises."""


class ConnectionError(SwitchboardError):
    """The API could not be reached (refused, reset, DNS, timeout), after the allowed retries."""

    def __init__(self, base_url: str, reason: str) -> None:
        super().__init__(f"cannot reach the API at {base_url}: {reason}")
        self.base_url = base_url
        self.reason = reason


class ResponseError(SwitchboardError):
    """The API answered something this SDK cannot read (not JSON, or not the documented shape)."""


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str


class ApiError(SwitchboardError):
    """The API refused the request; attributes are the problem details of its answer."""

    def __init__(
        self,
        status: int,
        type: str = "about:blank",
        title: str = "",
        detail: str = "",
        errors: list[FieldError] | None = None,
        *,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status = status
        self.type = type
        self.title = title
        self.detail = detail
        self.errors = errors or []
        self.body = body
        self.headers = headers or {}
        super().__init__(self.message)

    @property
    def slug(self) -> str:
        """The last part of the problem type (`validation`, `conflict`, ...)."""
        return self.type.rstrip("/").rsplit("/", 1)[-1]

    @property
    def message(self) -> str:
        """One readable line: the detail (or title), then the field errors, then the status."""
        text = self.detail or self.title or f"HTTP {self.status}"
        # Field errors the detail does not already spell out (APIs often repeat the first one there).
        extra = [e for e in self.errors if e.message not in text]
        if extra:
            fields = "; ".join(f"{e.field}: {e.message}" if e.field else e.message for e in extra)
            text = fields if text in (self.title, f"HTTP {self.status}") else f"{text}: {fields}"
        return f"{text} ({self.status})"


class ValidationError(ApiError):
    """422: the request was understood but its content is not valid (see `errors` for the fields)."""


class AuthenticationError(ApiError):
    """401: no API key, an unknown one, or a revoked one."""


class PermissionDeniedError(ApiError):
    """403: the key's role may not use this route."""


class NotFoundError(ApiError):
    """404: no such object for this tenant (another tenant's ids look exactly like missing ones)."""


class ConflictError(ApiError):
    """409: refused because of the current state (a number already held, seats still in use, ...)."""


class PayloadTooLargeError(ApiError):
    """413: the request body is too large."""


class RateLimitedError(ApiError):
    """429: too many requests; `retry_after` is how many seconds the API asked to wait (None: unsaid)."""

    def __init__(self, *args: Any, retry_after: float | None = None, **kwargs: Any) -> None:
        self.retry_after = retry_after
        super().__init__(*args, **kwargs)


class ServerError(ApiError):
    """5xx: the API failed; retried automatically before this is raised."""


_BY_STATUS: dict[int, type[ApiError]] = {
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    422: ValidationError,
    429: RateLimitedError,
}


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - now)


def _field_errors(raw: Any) -> list[FieldError]:
    if not isinstance(raw, list):
        return []
    found: list[FieldError] = []
    for item in raw:
        if isinstance(item, dict):
            found.append(FieldError(str(item.get("field") or ""), str(item.get("message") or "")))
        elif isinstance(item, str):
            found.append(FieldError("", item))
    return found


def error_from_response(status: int, headers: dict[str, str], content: bytes, *, now: float) -> ApiError:
    """The typed error for a 4xx/5xx answer, reading an RFC 9457 body when there is one."""
    body: Any = None
    try:
        body = msgspec.json.decode(content) if content else None
    except msgspec.DecodeError:
        body = content.decode("utf-8", "replace").strip()[:500] or None
    fields: dict[str, Any] = body if isinstance(body, dict) else {}
    cls = _BY_STATUS.get(status, ServerError if status >= 500 else ApiError)
    kwargs: dict[str, Any] = {
        "type": str(fields.get("type") or "about:blank"),
        "title": str(fields.get("title") or ""),
        "detail": str(fields.get("detail") or (body if isinstance(body, str) else "")),
        "errors": _field_errors(fields.get("errors")),
        "body": body,
        "headers": headers,
    }
    if cls is RateLimitedError:
        kwargs["retry_after"] = parse_retry_after(headers.get("retry-after"), now=now)
    return cls(status, **kwargs)

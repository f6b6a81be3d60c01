"""RFC 9457 problem details: the one error shape of the API, and the handlers that produce it for every
exception (ours, Litestar's, asyncpg's and unexpected ones), so that no error escapes in another form."""

from __future__ import annotations

import re
from typing import Any

import asyncpg
import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import ParameterKwarg

from services.kernel.log import get_logger

__all__ = [
    "DELETE_RESPONSES",
    "PROBLEM_MEDIA_TYPE",
    "PUBLIC_ERRORS",
    "READ_ERRORS",
    "WRITE_ERRORS",
    "FieldError",
    "Problem",
    "conflict",
    "exception_handlers",
    "forbidden",
    "not_found",
    "problem_response",
    "problem_responses",
    "unauthorized",
    "validation",
    "validation_problem",
]

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_BASE = "https://switchboard.dev/problems/"

# Slug and title per status for problems raised without a slug of their own.
_BY_STATUS: dict[int, tuple[str, str]] = {
    400: ("bad-request", "Bad request"),
    401: ("unauthorized", "Unauthorized"),
    403: ("forbidden", "Forbidden"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    409: ("conflict", "Conflict"),
    410: ("gone", "Gone"),
    413: ("payload-too-large", "Payload too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    422: ("validation", "Validation failed"),
    429: ("rate-limited", "Too many requests"),
    500: ("internal", "Internal server error"),
    503: ("unavailable", "Service unavailable"),
}


class FieldError(msgspec.Struct):
    field: str
    message: str


class ProblemDetails(msgspec.Struct, omit_defaults=True):
    type: str
    title: str
    status: int
    detail: str = ""
    errors: list[FieldError] | None = None


class Problem(Exception):
    """An error answer. Raise it anywhere in a request; the handler renders it."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        slug: str | None = None,
        title: str | None = None,
        errors: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        default_slug, default_title = _BY_STATUS.get(status, ("error", "Error"))
        self.status = status
        self.detail = detail
        self.slug = slug or default_slug
        self.title = title or default_title
        self.errors = errors
        self.headers = headers or {}

    def body(self) -> ProblemDetails:
        return ProblemDetails(
            type=PROBLEM_BASE + self.slug,
            title=self.title,
            status=self.status,
            detail=self.detail,
            errors=self.errors,
        )


def problem_responses(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI entries saying that these statuses answer with problem details."""
    return {
        status: ResponseSpec(
            data_container=ProblemDetails,
            media_type=PROBLEM_MEDIA_TYPE,
            description=_BY_STATUS[status][1] + f" (problem type {PROBLEM_BASE}{_BY_STATUS[status][0]})",
            generate_examples=False,
        )
        for status in statuses
    }


READ_ERRORS = problem_responses(400, 401, 404, 422, 429)
WRITE_ERRORS = problem_responses(400, 401, 403, 404, 409, 413, 415, 422, 429)
# A DELETE answered 204: no body, so no content type (Litestar would document application/json for a
# handler returning Response[None]).
DELETE_RESPONSES = {**WRITE_ERRORS, 204: ResponseSpec(data_container=None, description="Done: no content")}
PUBLIC_ERRORS = problem_responses(400, 413, 415, 422, 429)


def validation(field: str, message: str) -> Problem:
    return Problem(422, f"{field}: {message}", errors=[FieldError(field, message)])


def not_found(kind: str) -> Problem:
    return Problem(404, f"no {kind} with this id")


def conflict(detail: str) -> Problem:
    return Problem(409, detail)


def forbidden(detail: str) -> Problem:
    return Problem(403, detail)


def unauthorized(detail: str) -> Problem:
    return Problem(401, detail, headers={"WWW-Authenticate": 'Bearer realm="switchboard"'})


def problem_response(problem: Problem) -> Response[Any]:
    return Response(
        content=msgspec.json.encode(problem.body()),
        status_code=problem.status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=problem.headers,
    )


# msgspec and Litestar name the failing field as `$.a.b` or `$[0]`; we report `a.b`.
_MSGSPEC_PATH = re.compile(r"\s*-\s*at\s*`\$(?P<path>[^`]*)`\s*$")


_PARAM_NAMES = {"from_": "from"}


def _field_error(message: str, key: str | None) -> FieldError:
    match = _MSGSPEC_PATH.search(message)
    path = ""
    if match:
        path = match.group("path").lstrip(".")
        message = message[: match.start()]
    field = path or (key or "")
    if field in ("data", "body"):
        field = ""
    # Python names of query parameters that are keywords in Python.
    field = _PARAM_NAMES.get(field, field)
    if message.strip() in ("'data'", "data"):
        # Litestar's way of saying that a handler expecting a body got none.
        message = "a JSON body is required"
    # "Object contains unknown field `x`" names the field inside the message.
    unknown = re.search(r"unknown field `([^`]+)`", message)
    if unknown:
        field = f"{field}.{unknown.group(1)}" if field else unknown.group(1)
    missing = re.search(r"missing required field `([^`]+)`", message)
    if missing:
        field = f"{field}.{missing.group(1)}" if field else missing.group(1)
    return FieldError(field=field or "body", message=message.strip())


def validation_problem(message: str) -> Problem:
    """A 422 from one msgspec validation message (`Expected ... - at `$.field``)."""
    error = _field_error(message, None)
    return Problem(422, f"{error.field}: {error.message}", errors=[error])


def _sent_names(request: Request[Any, Any, Any]) -> dict[str, str]:
    """A parameter's name as the client sends it (`from`) by its Python name (`start`): Litestar's
    validation errors name the latter, which the client never wrote."""
    handler = request.scope.get("route_handler")
    parameters = getattr(getattr(handler, "parsed_fn_signature", None), "parameters", None) or {}
    names: dict[str, str] = {}
    for name, parameter in parameters.items():
        kwarg = parameter.kwarg_definition
        sent = getattr(kwarg, "name", None) if isinstance(kwarg, ParameterKwarg) else None
        if isinstance(sent, str) and sent and sent != name:
            names[name] = sent
    return names


def _from_validation_exception(exc: ValidationException, sent: dict[str, str] | None = None) -> Problem:
    detail = str(exc.detail or "")
    extra = exc.extra if isinstance(exc.extra, list) else []
    lowered = detail.lower()
    if "json is malformed" in lowered or ("malformed" in lowered and not extra):
        return Problem(400, "the request body is not valid JSON")
    errors: list[FieldError] = []
    for item in extra:
        if isinstance(item, dict):
            message = str(item.get("message", "invalid value"))
            key = item.get("key")
            names = (sent or {}) if item.get("source") != "body" else {}
            field = None if key is None else names.get(str(key), str(key))
            errors.append(_field_error(message, field))
    if not errors:
        errors.append(_field_error(detail or "invalid value", None))
    summary = "; ".join(f"{e.field}: {e.message}" for e in errors)
    return Problem(422, summary, errors=errors)


def _from_http_exception(exc: HTTPException) -> Problem:
    status = exc.status_code
    headers = {k: v for k, v in (exc.headers or {}).items()}
    detail = str(exc.detail or "")
    if status == 404:
        detail = "no such resource"
    elif status == 405:
        detail = "this method is not allowed on this path"
    elif status == 413:
        detail = "the request body is too large"
    elif status == 400 and detail.lower() in ("", "bad request"):
        detail = "bad request"
    elif status >= 500:
        get_logger().error("http_exception", status=status, detail=detail)
        detail = "the server could not handle this request"
    return Problem(status, detail, headers=headers)


def _from_asyncpg(exc: asyncpg.PostgresError) -> Problem:
    # Handlers turn the constraint errors they expect into precise messages; these are the safety net.
    if isinstance(exc, asyncpg.UniqueViolationError):
        return Problem(409, "an object with these values already exists")
    if isinstance(exc, asyncpg.ForeignKeyViolationError):
        return Problem(409, "the request refers to an object that does not exist or is still in use")
    if isinstance(exc, (asyncpg.CheckViolationError, asyncpg.NotNullViolationError, asyncpg.DataError)):
        return Problem(
            422, "a value is out of range or malformed", errors=[FieldError("body", "invalid value")]
        )
    if isinstance(exc, asyncpg.SerializationError | asyncpg.DeadlockDetectedError):
        return Problem(409, "a concurrent change conflicted with this request; retry it")
    if isinstance(exc, _UNAVAILABLE_PG):
        get_logger().warning("database_unavailable", error_class=type(exc).__name__)
        return _unavailable()
    get_logger().exception("database_error", error_class=type(exc).__name__)
    return Problem(500, "the server could not handle this request")


def _handle_problem(_: Request[Any, Any, Any], exc: Problem) -> Response[Any]:
    return problem_response(exc)


def _handle_validation(request: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    return problem_response(_from_validation_exception(exc, _sent_names(request)))


def _handle_http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    if isinstance(exc, ValidationException):
        return problem_response(_from_validation_exception(exc, _sent_names(request)))
    return problem_response(_from_http_exception(exc))


def _handle_postgres(_: Request[Any, Any, Any], exc: asyncpg.PostgresError) -> Response[Any]:
    return problem_response(_from_asyncpg(exc))


def _unavailable() -> Problem:
    return Problem(503, "a backing service is unavailable; retry shortly", headers={"Retry-After": "1"})


# The database went away or is overloaded: the client may retry, it did nothing wrong.
_UNAVAILABLE_PG = (
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.QueryCanceledError,
    asyncpg.AdminShutdownError,
)


def _handle_any(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    if isinstance(exc, OSError | asyncpg.InterfaceError | TimeoutError):
        get_logger().warning(
            "backend_unavailable", error_class=type(exc).__name__, path=request.scope.get("path")
        )
        return problem_response(_unavailable())
    # Log the whole exception server-side; the client learns only that it failed.
    get_logger().error(
        "unhandled_exception",
        method=request.scope.get("method"),
        path=request.scope.get("path"),
        error_class=type(exc).__name__,
        exc_info=exc,
    )
    return problem_response(Problem(500, "the server could not handle this request"))


def exception_handlers() -> dict[type[Exception] | int, Any]:
    return {
        Problem: _handle_problem,
        ValidationException: _handle_validation,
        HTTPException: _handle_http,
        asyncpg.PostgresError: _handle_postgres,
        Exception: _handle_any,
    }

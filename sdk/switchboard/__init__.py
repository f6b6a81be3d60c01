"""Switchboard Python SDK: `Client` and `AsyncClient` for the control-plane API (docs/sdk.md)."""

from __future__ import annotations

from ._calls import UNSET
from ._core import DEFAULT_BASE_URL, RetryPolicy
from ._version import __version__
from .async_client import AsyncClient, async_signup
from .client import Client, signup
from .errors import (
    ApiError,
    AuthenticationError,
    ConflictError,
    ConnectionError,
    FieldError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitedError,
    ResponseError,
    ServerError,
    SwitchboardError,
    ValidationError,
)
from .flows import Deployed, Flow, FlowIssue, FlowVersion, VersionSummary
from .models import (
    Agent,
    AuditEntry,
    Key,
    KeyWithSecret,
    Me,
    Number,
    Page,
    Queue,
    Seats,
    SignupResult,
    Site,
    Tenant,
    Trunk,
    Usage,
    UsageInterval,
    to_dict,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "UNSET",
    "Agent",
    "ApiError",
    "AsyncClient",
    "AuditEntry",
    "AuthenticationError",
    "Client",
    "ConflictError",
    "ConnectionError",
    "Deployed",
    "FieldError",
    "Flow",
    "FlowIssue",
    "FlowVersion",
    "Key",
    "KeyWithSecret",
    "Me",
    "NotFoundError",
    "Number",
    "Page",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "Queue",
    "RateLimitedError",
    "ResponseError",
    "RetryPolicy",
    "Seats",
    "ServerError",
    "SignupResult",
    "Site",
    "SwitchboardError",
    "Tenant",
    "Trunk",
    "Usage",
    "UsageInterval",
    "ValidationError",
    "VersionSummary",
    "__version__",
    "async_signup",
    "signup",
    "to_dict",
]

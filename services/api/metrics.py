"""Request counters and latency histograms, labelled by route template (not raw path: bounded cardinality)."""

from __future__ import annotations

import time
from typing import Any

import structlog
from litestar.enums import ScopeType
from litestar.exceptions import HTTPException
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from services.kernel import metrics

from .problems import Problem

__all__ = ["metrics_middleware"]

# Module level: the kernel registry is per process and refuses a metric registered twice.
REQUESTS = metrics.counter("api_requests_total", "HTTP requests answered", ("method", "route", "status"))
LATENCY = metrics.histogram("api_request_seconds", "HTTP request latency", ("method", "route"))


def metrics_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        # Ids bound to log lines during this request (tenant, key) must not outlive it.
        log_context = structlog.contextvars.get_contextvars()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await app(scope, receive, send_wrapper)
        except Problem as exc:
            status = exc.status
            raise
        except HTTPException as exc:
            status = exc.status_code
            raise
        finally:
            route: Any = scope.get("path_template") or "unmatched"
            method = scope.get("method", "")
            REQUESTS.labels(method, route, str(status)).inc()
            LATENCY.labels(method, route).observe(time.perf_counter() - started)
            structlog.contextvars.clear_contextvars()
            structlog.contextvars.bind_contextvars(**log_context)

    return middleware

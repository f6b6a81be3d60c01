"""Structured logs (structlog) with tenant and contact ids bound from context: JSON lines for machines, or
short readable lines for a person at a terminal (`SB_LOG_FORMAT=console|json`; by default console when
stdout is a terminal). Lines of libraries that log through the standard `logging` module (aioice, aiortc)
go through the same renderer, so the output never mixes JSON with unstructured text."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from .lean import without_rich

with without_rich():
    import structlog

__all__ = ["LOG_FORMATS", "bind", "configure_logging", "get_logger", "log_format", "unbind"]

LOG_FORMATS = ("console", "json")
# Libraries whose INFO lines are per-packet or per-check detail (aioice logs every ICE check of every call):
# shown only when the service runs at debug.
_CHATTY = ("aioice", "aiortc")


def log_format(environ: dict[str, str] | os._Environ[str] | None = None, stream: Any = None) -> str:
    """SB_LOG_FORMAT if set (console or json), else console on a terminal and json otherwise."""
    value = (environ if environ is not None else os.environ).get("SB_LOG_FORMAT", "").strip().lower()
    if value in LOG_FORMATS:
        return value
    if value:
        raise ValueError(f"SB_LOG_FORMAT={value!r}: choose console or json")
    return "console" if (stream or sys.stdout).isatty() else "json"


def _drop_service(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    # On the console the runtime already prefixes each line with the service's name.
    event.pop("service", None)
    return event


def configure_logging(service: str, level: str = "info", fmt: str | None = None) -> None:
    fmt = fmt or log_format()
    numeric = logging.getLevelNamesMapping()[level.upper()]
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
    ]
    renderer: Any
    if fmt == "console":
        shared += [structlog.processors.TimeStamper(fmt="%H:%M:%S", utc=False), _drop_service]
        renderer = structlog.dev.ConsoleRenderer(colors=False, pad_event=24)
    else:
        shared.append(structlog.processors.TimeStamper(fmt="iso", utc=True))
        renderer = structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
    # The standard library's records (aioice, aiortc, asyncio...) rendered by the same processors.
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    for name in _CHATTY:
        logging.getLogger(name).setLevel(numeric if numeric <= logging.DEBUG else logging.WARNING)
    structlog.contextvars.bind_contextvars(service=service)


def bind(**ids: Any) -> None:
    """Bind ids (tenant_id, contact_id, ...) to every log line of the current task."""
    structlog.contextvars.bind_contextvars(**{k: str(v) for k, v in ids.items()})


def unbind(*keys: str) -> None:
    structlog.contextvars.unbind_contextvars(*keys)


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name)

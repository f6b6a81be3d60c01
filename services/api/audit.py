"""The audit log, for admins: who changed what and when, oldest first."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg
import msgspec
from litestar import Controller, get

from .auth import admin_only
from .crud import read_page
from .deps import TenantConnDep
from .pagination import DEFAULT_LIMIT, CursorParam, LimitParam
from .problems import READ_ERRORS

__all__ = ["AuditController", "AuditEntry"]

COLUMNS = "id, at, actor_key_id, actor_role, action, target_type, target_id, detail"


class AuditEntry(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    at: datetime
    actor_key_id: uuid.UUID | None
    actor_role: str | None
    action: str
    target_type: str
    target_id: str | None
    detail: dict[str, Any]


class AuditPage(msgspec.Struct):
    items: list[AuditEntry]
    next_cursor: str | None


def entry_from_row(row: asyncpg.Record) -> AuditEntry:
    return AuditEntry(
        id=row["id"],
        at=row["at"],
        actor_key_id=row["actor_key_id"],
        actor_role=row["actor_role"],
        action=row["action"],
        target_type=row["target_type"],
        target_id=row["target_id"],
        detail=msgspec.json.decode(row["detail"]),
    )


class AuditController(Controller):
    path = "/v1/audit"
    tags = ["audit"]
    guards = [admin_only]

    @get("/", responses=READ_ERRORS, summary="Audit log entries, newest last")
    async def list_audit(
        self, tenant_conn: TenantConnDep, limit: LimitParam = DEFAULT_LIMIT, cursor: CursorParam = None
    ) -> AuditPage:
        rows, next_cursor = await read_page(tenant_conn, "audit_log", COLUMNS, limit, cursor)
        return AuditPage(items=[entry_from_row(r) for r in rows], next_cursor=next_cursor)

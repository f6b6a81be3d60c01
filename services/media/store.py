"""PostgreSQL lookups for the SIP edge: dialled number -> tenant, the tenant's call limit and trunks."""

from __future__ import annotations

import ipaddress
import uuid
from dataclasses import dataclass

import asyncpg

from services.kernel.db import tenant_tx

__all__ = ["NumberRoute", "Store", "Trunk"]


@dataclass(frozen=True)
class Trunk:
    id: uuid.UUID
    name: str
    allowed_ips: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    username: str | None
    realm: str | None
    ha1_sha256: str | None
    ha1_md5: str | None
    outbound_host: str | None
    outbound_port: int | None

    def allows(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in net for net in self.allowed_ips)


@dataclass(frozen=True)
class NumberRoute:
    tenant_id: uuid.UUID
    number_id: uuid.UUID
    e164: str
    flow_id: uuid.UUID | None
    queue_id: uuid.UUID | None
    max_concurrent_calls: int
    trunks: tuple[Trunk, ...]


def _trunk(row: asyncpg.Record) -> Trunk:
    return Trunk(
        id=row["id"],
        name=row["name"],
        allowed_ips=tuple(ipaddress.ip_network(str(n), strict=False) for n in row["allowed_ips"]),
        username=row["username"],
        realm=row["realm"],
        ha1_sha256=row["ha1_sha256"],
        ha1_md5=row["ha1_md5"],
        outbound_host=row["outbound_host"],
        outbound_port=row["outbound_port"],
    )


_TRUNKS = """SELECT id, name, allowed_ips, username, realm, ha1_sha256, ha1_md5, outbound_host, outbound_port
             FROM sip_trunks ORDER BY name"""


class Store:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def route(self, e164: str) -> NumberRoute | None:
        async with self.pool.acquire() as conn, conn.transaction(readonly=True):
            # The number_lookup policy shows exactly this one row before the tenant is known.
            await conn.execute("SELECT set_config('app.lookup_e164', $1, true)", e164)
            row = await conn.fetchrow(
                "SELECT id, tenant_id, flow_id, queue_id FROM numbers WHERE e164 = $1", e164
            )
            if row is None:
                return None
            await conn.execute("SELECT set_config('app.lookup_e164', '', true)")
            await conn.execute("SELECT set_config('app.tenant_id', $1, true)", str(row["tenant_id"]))
            limit = await conn.fetchval(
                "SELECT max_concurrent_calls FROM tenants WHERE id = $1", row["tenant_id"]
            )
            trunks = tuple(_trunk(r) for r in await conn.fetch(_TRUNKS))
        return NumberRoute(
            tenant_id=row["tenant_id"],
            number_id=row["id"],
            e164=e164,
            flow_id=row["flow_id"],
            queue_id=row["queue_id"],
            max_concurrent_calls=int(limit if limit is not None else 0),
            trunks=trunks,
        )

    async def trunks(self, tenant_id: uuid.UUID) -> tuple[Trunk, ...]:
        async with tenant_tx(self.pool, tenant_id, readonly=True) as conn:
            return tuple(_trunk(r) for r in await conn.fetch(_TRUNKS))

"""PostgreSQL lookups for the SIP edge: dialled number -> tenant, the tenant's call limit and trunks.

Routes are cached in memory (`RouteCache`, sans-IO): call set-up does no database work for a number seen
in the last minute. The API publishes `config.changed` for numbers; `Store.invalidate` drops that
tenant's entries (and every cached "no such number") so a change is seen by the next call. Trunks and
call limits have no change event yet: the TTL bounds how stale they can be.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
import uuid
from dataclasses import dataclass

import asyncpg

from services.kernel.db import tenant_tx

__all__ = ["NumberRoute", "RouteCache", "Store", "Trunk"]


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
    outbound_transport: str = "udp"  # "udp" | "tcp"

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
        outbound_transport=row["outbound_transport"] or "udp",
    )


_TRUNK_COLUMNS = (
    "s.id, s.name, s.allowed_ips, s.username, s.realm, s.ha1_sha256, s.ha1_md5, s.outbound_host, "
    "s.outbound_port, s.outbound_transport"
)
_TRUNKS = f"SELECT {_TRUNK_COLUMNS} FROM sip_trunks s ORDER BY s.name"
# The tenant's limit and its trunks in one statement (one row with NULL trunk columns when it has none).
_TENANT = f"""SELECT t.max_concurrent_calls, {_TRUNK_COLUMNS}
              FROM tenants t LEFT JOIN sip_trunks s ON s.tenant_id = t.id
              WHERE t.id = $1 ORDER BY s.name"""


class RouteCache:
    """e164 -> NumberRoute (or None: no such number), with expiry; `now` is passed in."""

    def __init__(self, *, ttl: float = 60.0, negative_ttl: float = 5.0, max_items: int = 100_000) -> None:
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.max_items = max_items
        self._items: dict[str, tuple[NumberRoute | None, float]] = {}
        self.hits = 0
        self.misses = 0

    def get(self, e164: str, now: float) -> tuple[bool, NumberRoute | None]:
        """(found, route): found is False when the database must be asked."""
        item = self._items.get(e164)
        if item is None or item[1] <= now:
            if item is not None:
                del self._items[e164]
            self.misses += 1
            return False, None
        self.hits += 1
        return True, item[0]

    def put(self, e164: str, route: NumberRoute | None, now: float) -> None:
        if len(self._items) >= self.max_items:
            self._items.clear()  # crude but bounded; a refill costs one lookup per number
        self._items[e164] = (route, now + (self.ttl if route is not None else self.negative_ttl))

    def invalidate_tenant(self, tenant_id: uuid.UUID) -> int:
        """Forget the tenant's numbers and every negative entry (a number may have moved to it)."""
        stale = [k for k, (r, _) in self._items.items() if r is None or r.tenant_id == tenant_id]
        for key in stale:
            del self._items[key]
        return len(stale)

    def clear(self) -> None:
        self._items.clear()


class Store:
    def __init__(self, pool: asyncpg.Pool, *, cache: RouteCache | None = None) -> None:
        self.pool = pool
        self.cache = cache if cache is not None else RouteCache()
        self._inflight: dict[str, asyncio.Future[NumberRoute | None]] = {}
        self._generation = 0  # bumped by invalidate: a lookup that started before is not cached

    def invalidate(self, tenant_id: uuid.UUID) -> None:
        self._generation += 1
        self.cache.invalidate_tenant(tenant_id)

    async def route(self, e164: str) -> NumberRoute | None:
        found, route = self.cache.get(e164, time.monotonic())
        if found:
            return route
        inflight = self._inflight.get(e164)
        if inflight is not None:  # a burst of calls to one cold number shares one lookup
            return await asyncio.shield(inflight)
        future: asyncio.Future[NumberRoute | None] = asyncio.get_running_loop().create_future()
        self._inflight[e164] = future
        generation = self._generation
        try:
            route = await self._lookup(e164)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody else must
            raise
        finally:
            self._inflight.pop(e164, None)
        if generation == self._generation:
            self.cache.put(e164, route, time.monotonic())
        future.set_result(route)
        return route

    async def _lookup(self, e164: str) -> NumberRoute | None:
        async with self.pool.acquire() as conn, conn.transaction(readonly=True):
            # The number_lookup policy shows exactly this one row before the tenant is known.
            await conn.execute("SELECT set_config('app.lookup_e164', $1, true)", e164)
            row = await conn.fetchrow(
                "SELECT id, tenant_id, flow_id, queue_id FROM numbers WHERE e164 = $1", e164
            )
            if row is None:
                return None
            await conn.execute(
                "SELECT set_config('app.lookup_e164', '', true), set_config('app.tenant_id', $1, true)",
                str(row["tenant_id"]),
            )
            rows = await conn.fetch(_TENANT, row["tenant_id"])
        limit = rows[0]["max_concurrent_calls"] if rows else None
        return NumberRoute(
            tenant_id=row["tenant_id"],
            number_id=row["id"],
            e164=e164,
            flow_id=row["flow_id"],
            queue_id=row["queue_id"],
            max_concurrent_calls=int(limit if limit is not None else 0),
            trunks=tuple(_trunk(r) for r in rows if r["id"] is not None),
        )

    async def call_limit(self, tenant_id: uuid.UUID) -> int:
        """The tenant's concurrent-call limit (0 for no such tenant)."""
        async with tenant_tx(self.pool, tenant_id, readonly=True) as conn:
            limit = await conn.fetchval("SELECT max_concurrent_calls FROM tenants WHERE id = $1", tenant_id)
        return int(limit or 0)

    async def widget_key_limit(self, tenant_id: uuid.UUID, key_id: uuid.UUID) -> int | None:
        """The widget key's own concurrent-call limit (None: none; 0: no such key)."""
        async with tenant_tx(self.pool, tenant_id, readonly=True) as conn:
            row = await conn.fetchrow("SELECT max_concurrent_calls FROM widget_keys WHERE id = $1", key_id)
        return 0 if row is None else row["max_concurrent_calls"]

    async def trunks(self, tenant_id: uuid.UUID) -> tuple[Trunk, ...]:
        async with tenant_tx(self.pool, tenant_id, readonly=True) as conn:
            return tuple(_trunk(r) for r in await conn.fetch(_TRUNKS))

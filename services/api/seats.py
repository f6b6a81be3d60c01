"""Seats on demand (read, purchase, release; every change in the seat ledger) and usage from that ledger."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

import asyncpg
import msgspec
from litestar import Controller, Response, get, post
from litestar.params import JSONBody, QueryParameter

from services.kernel.events import SeatsChanged
from services.kernel.ids import new_id

from .auth import Principal, admin_only
from .deps import MutationDep, TenantConnDep
from .mutations import Outcome, audit
from .problems import READ_ERRORS, WRITE_ERRORS, Problem, validation
from .queries import seats as sql
from .usage import integrate

__all__ = ["Seats", "SeatsController", "UsageController", "seats_now"]

MAX_SEATS = 100_000
# Timestamps outside this range are surely mistakes, and the far ends overflow date arithmetic.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


class Seats(msgspec.Struct, kw_only=True):
    purchased: int
    logged_in: int
    available: int
    plan: Literal["trial", "paid"]


class SeatChange(msgspec.Struct, forbid_unknown_fields=True):
    count: Annotated[int, msgspec.Meta(ge=1, le=1000)]


class UsageInterval(msgspec.Struct, kw_only=True):
    from_: datetime = msgspec.field(name="from")
    to: datetime
    seats: int
    seconds: float


class Usage(msgspec.Struct, kw_only=True):
    from_: datetime = msgspec.field(name="from")
    to: datetime
    seat_seconds: float
    seat_hours: float
    intervals: list[UsageInterval]


async def seats_now(conn: asyncpg.Connection, *, lock: bool = False) -> Seats:
    row = await sql.purchase(conn, lock=lock)
    if row is None:  # the key's tenant is gone (deleted between authentication and now)
        raise Problem(401, "this API key's tenant no longer exists")
    logged_in = await sql.signed_in(conn)
    purchased = row["seats_purchased"]
    return Seats(
        purchased=purchased,
        logged_in=logged_in,
        available=max(purchased - logged_in, 0),
        plan=row["plan"],
    )


class SeatsController(Controller):
    path = "/v1/seats"
    tags = ["seats"]

    @get("/", responses=READ_ERRORS, summary="Seats purchased, logged in and available")
    async def get_seats(self, tenant_conn: TenantConnDep) -> Seats:
        return await seats_now(tenant_conn)

    @post(
        "/purchase",
        responses=WRITE_ERRORS,
        status_code=200,
        guards=[admin_only],
        summary="Buy seats (the first purchase ends the trial)",
    )
    async def purchase_seats(self, mutation: MutationDep, data: JSONBody[SeatChange]) -> Response[Seats]:
        async def work(conn: asyncpg.Connection, principal: Principal) -> Outcome[Seats]:
            seats = await seats_now(conn, lock=True)
            after = seats.purchased + data.count
            if after > MAX_SEATS:
                raise Problem(409, f"a tenant may hold at most {MAX_SEATS} seats; you hold {seats.purchased}")
            await sql.set_purchased(conn, after, paid=True)
            await sql.ledger_add(
                conn, new_id(), principal.tenant_id, data.count, after, "purchase", principal.key_id
            )
            await audit(
                conn, principal, "seats.purchased", "seats", None, {"count": data.count, "purchased": after}
            )
            result = Seats(
                purchased=after,
                logged_in=seats.logged_in,
                available=max(after - seats.logged_in, 0),
                plan="paid",
            )
            return Outcome(
                200, result, [SeatsChanged(tenant_id=principal.tenant_id, purchased=after, delta=data.count)]
            )

        return await mutation.run(work)

    @post(
        "/release",
        responses=WRITE_ERRORS,
        status_code=200,
        guards=[admin_only],
        summary="Give seats back (never below agents logged in)",
    )
    async def release_seats(self, mutation: MutationDep, data: JSONBody[SeatChange]) -> Response[Seats]:
        async def work(conn: asyncpg.Connection, principal: Principal) -> Outcome[Seats]:
            # The tenant row lock serialises this with routing's logins, which take the same lock.
            seats = await seats_now(conn, lock=True)
            if data.count > seats.purchased:
                raise Problem(409, f"cannot release {data.count} seats: only {seats.purchased} are purchased")
            after = seats.purchased - data.count
            if after < seats.logged_in:
                releasable = seats.purchased - seats.logged_in
                raise Problem(
                    409,
                    f"cannot release {data.count} of {seats.purchased} seats: {seats.logged_in} agents are "
                    f"logged in now, so at most {releasable} can be released",
                )
            await sql.set_purchased(conn, after, paid=False)
            await sql.ledger_add(
                conn, new_id(), principal.tenant_id, -data.count, after, "release", principal.key_id
            )
            await audit(
                conn, principal, "seats.released", "seats", None, {"count": data.count, "purchased": after}
            )
            result = Seats(
                purchased=after,
                logged_in=seats.logged_in,
                available=max(after - seats.logged_in, 0),
                plan=seats.plan,
            )
            return Outcome(
                200, result, [SeatsChanged(tenant_id=principal.tenant_id, purchased=after, delta=-data.count)]
            )

        return await mutation.run(work)


def _utc(field: str, value: datetime) -> datetime:
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    try:
        aware = aware.astimezone(UTC)
    except OverflowError:
        raise validation(field, "is out of range") from None
    if not EARLIEST <= aware <= LATEST:
        raise validation(field, "must be between 1970 and 9000")
    return aware


class UsageController(Controller):
    path = "/v1/usage"
    tags = ["seats"]

    @get(
        "/",
        responses=READ_ERRORS,
        summary="Purchased seats integrated over a period (seat-seconds), for pro-rata billing",
    )
    async def get_usage(
        self,
        tenant_conn: TenantConnDep,
        from_: Annotated[
            datetime | None,
            QueryParameter(
                name="from", description="ISO 8601; default: the start of the current month (UTC)"
            ),
        ] = None,
        to: Annotated[
            datetime | None, QueryParameter(name="to", description="ISO 8601; default: now")
        ] = None,
    ) -> Usage:
        now = datetime.now(UTC)
        end = _utc("to", to) if to is not None else now
        start = (
            _utc("from", from_)
            if from_ is not None
            else now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        )
        if start >= end:
            raise validation("from", "must be earlier than to")
        rows = await sql.ledger_between(tenant_conn, start, end)
        ledger = [(r["at"], r["seats_after"]) for r in sorted(rows, key=lambda r: (r["at"], r["id"]))]
        # Time after now is not used yet, so it is not counted.
        intervals = integrate(ledger, start, min(end, now))
        seat_seconds = sum(iv.seats * iv.seconds for iv in intervals)
        return Usage(
            from_=start,
            to=end,
            seat_seconds=round(seat_seconds, 3),
            seat_hours=round(seat_seconds / 3600, 6),
            intervals=[
                UsageInterval(from_=iv.start, to=iv.end, seats=iv.seats, seconds=round(iv.seconds, 3))
                for iv in intervals
            ],
        )

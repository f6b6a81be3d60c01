"""Browser sign-in for people (agents, supervisors, admins): invitations, passwords, sessions.

- `POST /v1/invites` (admin key): a one-time link `/agent/#invite=...` for an agent's (or a supervisor's,
  an admin's) email; a new invitation replaces older unused ones; using one sets the password.
- `POST /v1/auth/invite` sets the password with that token and signs in; `POST /v1/auth/invite/lookup`
  says whose invitation it is (for the page).
- `POST /v1/auth/signin` with email and password: throttled per account and per address (counters in
  PostgreSQL, shared by every API process), the account locked after repeated failures, every attempt on
  an existing account audited.
- `POST /v1/auth/refresh` trades the refresh cookie for an access token and a new cookie (sessions.py);
  `POST /v1/auth/signout` ends every session of the person; `POST /v1/agents/{id}/signout` (admin key)
  forces an agent out.

The refresh token lives only in an HttpOnly, SameSite=Strict cookie scoped to /v1/auth (Secure when served
over HTTPS), never in a URL or in the page's storage. Ending sessions publishes `SessionsEnded`, and every
API process closes the sockets it holds for them (signalling.py).

The handlers that set or read the cookie (sign-in, refresh, sign-out, accepting an invitation) keep the raw
`Request`: the cookie, the caller's address and user agent (kept with the session, audited), and whether
it came over HTTPS (the cookie's Secure flag) are the request's own. The others take `api`, `principal`
and `mutation` by injection (deps.py); the SQL is in queries/signin.py."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import asyncpg
import jwt
import msgspec
from litestar import Controller, Request, Response, post
from litestar.datastructures import Cookie
from litestar.params import JSONBody

from services.kernel.bus import BusError, CommandTimeout
from services.kernel.db import tenant_tx
from services.kernel.events import RoutingAgentLogout, SessionsEnded
from services.kernel.ids import new_id
from services.kernel.log import get_logger

from .auth import Principal, admin_only, same_origin, supervisor_only
from .crud import IdParam, path_id
from .deps import ApiDep, CallerDep, MutationDep
from .mutations import Outcome, audit
from .problems import PUBLIC_ERRORS, WRITE_ERRORS, Problem, conflict, not_found, problem_responses, validation
from .queries import agents as agent_sql
from .queries import signin as sql
from .sessions import (
    RefreshOutcome,
    SigninOutcome,
    decide_refresh,
    decide_signin,
    hash_password,
    hash_secret,
    new_refresh,
    parse_refresh,
    password_problem,
    successor,
    verify_password,
)
from .state import ApiState
from .throttle import count_attempt
from .tokens import ALGORITHM, CONSOLE_AUDIENCE, ISSUER, MIN_SECRET_BYTES, issue_agent_token
from .validation import check_email

__all__ = ["CONSOLE_AUDIENCE", "COOKIE", "AdminSignoutController", "AuthController", "InviteController"]

COOKIE = "sb_refresh"
COOKIE_PATH = "/v1/auth"
THROTTLE_WINDOW_S = 60.0
# Earlier refresh secrets kept per session for reuse detection; older ones are merely unknown.
KEEP_USED = 200

Role = Literal["agent", "supervisor", "admin"]
Password = Annotated[str, msgspec.Meta(max_length=1024)]
Email = Annotated[str, msgspec.Meta(max_length=254)]
Token = Annotated[str, msgspec.Meta(max_length=200)]


class InviteCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    email: Email
    role: Role = "agent"


class Invite(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    account_id: uuid.UUID
    email: str
    role: str
    agent_id: uuid.UUID | None
    # A path on the API's own address: the CLI and the SDK put the base URL in front.
    path: str
    token: str
    expires_at: datetime


class InviteToken(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    token: Token


class InviteInfo(msgspec.Struct, kw_only=True):
    email: str
    role: str
    tenant_name: str
    expires_at: datetime


class SetPassword(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    token: Token
    password: Password


class Signin(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    email: Email
    password: Password


class SignedIn(msgspec.Struct, kw_only=True):
    access_token: str
    token_type: str
    expires_at: float
    expires_in: int
    session_id: uuid.UUID
    session_expires_at: float
    role: str
    email: str
    tenant_id: uuid.UUID
    agent_id: uuid.UUID | None = None


class Signout(msgspec.Struct, kw_only=True):
    sessions_ended: int


def _address(request: Request[Any, Any, Any]) -> str:
    # Behind a proxy, run uvicorn with --proxy-headers so that this is the caller, not the proxy.
    return request.client.host if request.client else "unknown"


def _cookie(request: Request[Any, Any, Any], value: str, max_age: int) -> Cookie:
    return Cookie(
        key=COOKIE,
        value=value,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        # Browsers refuse Secure cookies on plain http (except localhost): loopback demos use http.
        secure=request.url.scheme == "https",
        max_age=max_age,
    )


def _access_token(
    state: ApiState, row: asyncpg.Record, session_id: uuid.UUID, now: float
) -> tuple[str, float]:
    secret, ttl = state.settings.token_secret, state.settings.access_token_ttl_s
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise Problem(503, "sign-in is not available: the platform has no token secret configured")
    if row["agent_id"] is not None:
        return issue_agent_token(
            secret, row["tenant_id"], row["agent_id"], now=now, ttl=ttl, session_id=session_id
        )
    expires = int(now) + ttl
    claims = {
        "iss": ISSUER,
        "aud": CONSOLE_AUDIENCE,
        "sub": str(row["account_id"]),
        "tid": str(row["tenant_id"]),
        "role": row["role"],
        "sid": str(session_id),
        "jti": str(new_id()),
        "iat": int(now),
        "exp": expires,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM), float(expires)


def _signed_in(
    request: Request[Any, Any, Any],
    state: ApiState,
    row: asyncpg.Record,
    session_id: uuid.UUID,
    refresh: str,
    now: float,
) -> Response[SignedIn]:
    token, expires = _access_token(state, row, session_id, now)
    session_expires = float(row["expires"])
    body = SignedIn(
        access_token=token,
        token_type="Bearer",
        expires_at=expires,
        expires_in=int(expires - now),
        session_id=session_id,
        session_expires_at=session_expires,
        role=row["role"],
        email=row["email"],
        tenant_id=row["tenant_id"],
        agent_id=row["agent_id"],
    )
    return Response(
        body,
        status_code=200,
        cookies=[_cookie(request, refresh, max(1, int(session_expires - now)))],
        headers={"Cache-Control": "no-store"},
    )


async def _start_session(
    conn: asyncpg.Connection, request: Request[Any, Any, Any], state: ApiState, account: asyncpg.Record
) -> tuple[uuid.UUID, str, asyncpg.Record]:
    session_id = new_id()
    refresh, digest = new_refresh(session_id)
    row = await sql.insert_session(
        conn,
        account,
        session_id,
        float(state.settings.session_ttl_s),
        digest,
        _address(request)[:100],
        (request.headers.get("user-agent") or "")[:300],
    )
    return session_id, refresh, row


async def _throttle(conn: asyncpg.Connection, state: ApiState, buckets: list[tuple[str, int]]) -> None:
    for bucket, limit in buckets:
        hits, left = await count_attempt(conn, bucket, window_s=THROTTLE_WINDOW_S)
        if hits > limit:
            raise Problem(
                429,
                "too many sign-in attempts; wait a minute and try again",
                headers={"Retry-After": str(max(1, round(left)))},
            )


def _email_bucket(email: str) -> str:
    return "acct:" + hashlib.sha256(email.encode()).hexdigest()[:32]


class InviteController(Controller):
    path = "/v1/invites"
    tags = ["sign-in"]
    guards = [admin_only]

    @post(
        "/",
        status_code=201,
        responses=WRITE_ERRORS,
        summary="Invite a person to set a password and sign in at /agent/ (a one-time link)",
    )
    async def invite(
        self, api: ApiDep, mutation: MutationDep, data: JSONBody[InviteCreate]
    ) -> Response[Invite]:
        email = check_email("email", data.email)
        ttl = api.settings.invite_ttl_s

        async def work(conn: asyncpg.Connection, principal: Principal) -> Outcome[Invite]:
            agent_id = None
            if data.role == "agent":
                agent_id = await agent_sql.by_email(conn, email)
                if agent_id is None:
                    raise validation("email", "no agent has this email: create the agent first")
            account = await sql.account_by_email(conn, email)
            if account is not None and (account["role"] != data.role or account["agent_id"] != agent_id):
                raise conflict(f"{email} already has an account with the role {account['role']}")
            if account is None:
                try:
                    async with conn.transaction():
                        account = await sql.insert_account(
                            conn, principal.tenant_id, email, data.role, agent_id
                        )
                except asyncpg.UniqueViolationError:
                    # RLS hides the other tenant's row; the global unique index still sees it.
                    raise conflict(f"{email} already has an account with another organisation") from None
            assert account is not None
            await sql.retire_invites(conn, account["id"])
            token = secrets.token_urlsafe(32)
            row = await sql.insert_invite(
                conn, principal.tenant_id, account["id"], hash_secret(token), principal.key_id, float(ttl)
            )
            await audit(conn, principal, "account.invited", "account", account["id"], {"email": email})
            body = Invite(
                id=row["id"],
                account_id=account["id"],
                email=email,
                role=data.role,
                agent_id=agent_id,
                path=f"/agent/#invite={token}",
                token=token,
                expires_at=row["expires_at"],
            )
            return Outcome(
                201, body, replay=conflict("this Idempotency-Key already made an invitation; make a new one")
            )

        return await mutation.run(work)


class AdminSignoutController(Controller):
    path = "/v1/agents"
    tags = ["sign-in"]

    @post(
        "/{agent_id:str}/signout",
        status_code=200,
        guards=[supervisor_only],
        responses=WRITE_ERRORS,
        summary="Sign an agent out everywhere (supervisor or admin): its browser sessions and websockets end "
        "within seconds, and routing signs it out at once",
    )
    async def signout_agent(
        self, api: ApiDep, principal: CallerDep, mutation: MutationDep, agent_id: IdParam
    ) -> Response[Signout]:
        aid = path_id(agent_id, "agent")

        async def work(conn: asyncpg.Connection, principal: Principal) -> Outcome[Signout]:
            if not await agent_sql.exists(conn, aid) or not principal.sees_agent(aid):
                raise not_found("agent")  # outside a scoped supervisor's agents: as if it did not exist
            account_id = await sql.account_of_agent(conn, aid)
            ended = await sql.end_sessions(conn, account_id, "forced_signout") if account_id else []
            detail: dict[str, Any] = {"sessions": len(ended)}
            if principal.account_id is not None:
                detail["account_id"] = str(principal.account_id)
            await audit(conn, principal, "agent.signed_out", "agent", aid, detail)
            event = SessionsEnded(
                tenant_id=principal.tenant_id, session_ids=ended, agent_id=aid, reason="forced_signout"
            )
            return Outcome(200, Signout(sessions_ended=len(ended)), [event])

        response = await mutation.run(work)
        # Out of routing now, not when its socket's grace runs out (an agent not signed in is fine).
        if api.bus is not None:
            logout = RoutingAgentLogout(tenant_id=principal.tenant_id, agent_id=aid, force=True)
            try:
                await api.bus.request(logout, timeout=5.0)
            except (BusError, CommandTimeout):
                get_logger().warning("forced_logout_unanswered", agent_id=str(aid))
        return response


class AuthController(Controller):
    """Unauthenticated by API key: these answer to an email and password, an invitation or the cookie."""

    path = "/v1/auth"
    tags = ["sign-in"]
    security = []
    # The refresh cookie is SameSite=Strict; the Origin check refuses another site's page as well.
    guards = [same_origin]

    @post("/signin", status_code=200, responses=problem_responses(400, 401, 403, 422, 429, 503))
    async def signin(
        self, request: Request[Any, Any, Any], api: ApiDep, data: JSONBody[Signin]
    ) -> Response[SignedIn]:
        """Sign in with email and password: a session (the refresh cookie) and a first access token."""
        # The raw Request for its address (throttle, audit, the session) and scheme (the cookie's Secure flag).
        state, log = api, get_logger()
        email = data.email.strip().lower()
        address = _address(request)
        pool = state.db()
        async with pool.acquire() as conn:
            async with conn.transaction():
                await _throttle(
                    conn,
                    state,
                    [
                        ("addr:" + address, state.settings.signin_address_rate_per_minute),
                        (_email_bucket(email), state.settings.signin_rate_per_minute),
                    ],
                )
            async with conn.transaction(readonly=True):
                found = await sql.find_account(conn, email)
            if found is None:
                await asyncio.to_thread(verify_password, None, data.password)
                log.info("signin_unknown_email", address=address)
                raise Problem(401, "wrong email or password")
            now = time.time()
            async with tenant_tx(pool, found["tenant_id"]) as tx:
                # The row lock makes one account's attempts take turns: no parallel guessing past the lock.
                account = await sql.account_for_signin(tx, found["id"])
                assert account is not None
                locked = account["locked_until"] is not None and now < account["locked_until"]
                matches, rehash = (
                    (None, None)
                    if locked
                    else await asyncio.to_thread(verify_password, account["password_hash"], data.password)
                )
                attempt = decide_signin(
                    matches=matches,
                    failures=account["failed_signins"],
                    locked_until=account["locked_until"],
                    now=now,
                    lock_after=state.settings.signin_lock_failures,
                    lock_s=state.settings.signin_lock_s,
                )
                await sql.record_attempt(tx, account["id"], attempt.failures, attempt.locked_until, rehash)
                action = {
                    SigninOutcome.OK: "signin.succeeded",
                    SigninOutcome.WRONG: "signin.failed",
                    SigninOutcome.LOCKED: "signin.refused_locked",
                    SigninOutcome.NOW_LOCKED: "signin.locked",
                }[attempt.outcome]
                await audit(
                    tx,
                    None,
                    action,
                    "account",
                    account["id"],
                    {"email": account["email"], "address": address, "failures": attempt.failures},
                    tenant_id=account["tenant_id"],
                )
                if attempt.outcome is SigninOutcome.OK:
                    session_id, refresh, row = await _start_session(tx, request, state, account)
        if attempt.outcome is SigninOutcome.OK:
            return _signed_in(request, state, row, session_id, refresh, now)
        if attempt.outcome is SigninOutcome.WRONG:
            raise Problem(401, "wrong email or password")
        minutes = max(1, round(((attempt.locked_until or now) - now) / 60))
        raise Problem(
            403,
            f"this account is locked after repeated failed sign-ins; try again in {minutes} min "
            "or ask an admin for a new invitation",
            slug="account-locked",
            title="Account locked",
        )

    @post("/refresh", status_code=200, responses=problem_responses(401, 503))
    async def refresh(self, request: Request[Any, Any, Any], api: ApiDep) -> Response[SignedIn]:
        """A new access token for the session in the cookie, and a new refresh cookie (the old one is spent)."""
        # The raw Request for its cookie, address (audit) and scheme (the cookie's Secure flag).
        state = api
        parsed = parse_refresh(request.cookies.get(COOKIE))
        if parsed is None:
            raise Problem(401, "no session: sign in")
        session_id, presented = parsed
        now = time.time()
        pool = state.db()
        async with pool.acquire() as conn, conn.transaction():
            row = await sql.session_for_refresh(conn, session_id)
            if row is None:
                raise Problem(401, "this session does not exist: sign in")
            tenant_id = row["tenant_id"]
            outcome = decide_refresh(
                presented=presented,
                current=bytes(row["refresh_hash"]),
                used=[bytes(h) for h in row["used_hashes"]],
                revoked=row["revoked_at"] is not None,
                expires_at=row["expires"],
                now=now,
                rotated_at=row["refreshed"],
                grace_spent=row["refresh_grace_spent"],
                grace_s=float(state.settings.refresh_grace_s),
            )
            refresh, digest = successor(state.settings.token_secret, session_id, presented)
            if outcome is RefreshOutcome.ROTATE:
                await sql.rotate_refresh(conn, session_id, digest, KEEP_USED)
            elif outcome is RefreshOutcome.GRACE and secrets.compare_digest(
                digest, bytes(row["refresh_hash"])
            ):
                # The same successor as the lost answer held; once only.
                await sql.spend_grace(conn, session_id)
            elif outcome is RefreshOutcome.GRACE:
                outcome = RefreshOutcome.REUSED  # not the predecessor of the current secret after all
            elif outcome is RefreshOutcome.REUSED:
                await sql.revoke_reused(conn, session_id)
                await audit(
                    conn,
                    None,
                    "session.refresh_reused",
                    "account",
                    row["account_id"],
                    {"session_id": str(session_id), "address": _address(request)},
                    tenant_id=tenant_id,
                )
        if outcome in (RefreshOutcome.ROTATE, RefreshOutcome.GRACE):
            return _signed_in(request, state, row, session_id, refresh, now)
        if outcome is RefreshOutcome.REUSED:
            get_logger().warning("refresh_token_reused", session=str(session_id))
            await state.publish(
                [SessionsEnded(tenant_id=tenant_id, session_ids=[session_id], reason="refresh_reused")]
            )
            raise Problem(401, "this session was ended: its refresh token was used twice; sign in again")
        reason = {
            RefreshOutcome.REVOKED: "this session was signed out; sign in again",
            RefreshOutcome.EXPIRED: "this session has ended (the shift is over); sign in again",
        }.get(outcome, "this refresh token is not valid; sign in again")
        raise Problem(401, reason)

    @post("/signout", status_code=200, responses=problem_responses(401))
    async def signout(self, request: Request[Any, Any, Any], api: ApiDep) -> Response[Signout]:
        """End this person's sessions everywhere (every browser and tab) and clear the cookie."""
        # The raw Request for its cookie and scheme (the cleared cookie's Secure flag).
        state = api
        parsed = parse_refresh(request.cookies.get(COOKIE))
        ended: list[uuid.UUID] = []
        tenant_id = None
        if parsed is not None:
            session_id, presented = parsed
            async with state.db().acquire() as conn, conn.transaction():
                row = await sql.session_secrets(conn, session_id)
                # Any secret this session ever had proves the caller held it: enough to sign out.
                if row is not None and presented in [bytes(row["refresh_hash"])] + [
                    bytes(h) for h in row["used_hashes"]
                ]:
                    tenant_id = row["tenant_id"]
                    await sql.set_tenant(conn, tenant_id)
                    ended = await sql.end_sessions(conn, row["account_id"], "signed_out")
                    await audit(
                        conn,
                        None,
                        "signout",
                        "account",
                        row["account_id"],
                        {"sessions": len(ended)},
                        tenant_id=tenant_id,
                    )
        if tenant_id is not None:
            await state.publish([SessionsEnded(tenant_id=tenant_id, session_ids=ended, reason="signed_out")])
        return Response(
            Signout(sessions_ended=len(ended)), status_code=200, cookies=[_cookie(request, "", 0)]
        )

    @post("/invite/lookup", status_code=200, responses=problem_responses(400, 404, 410, 422))
    async def invite_lookup(self, api: ApiDep, data: JSONBody[InviteToken]) -> InviteInfo:
        """Whose invitation this is (the page shows it above the password fields)."""
        async with api.db().acquire() as conn, conn.transaction(readonly=True):
            invite = await _invite(conn, data.token)
            row = await sql.account_by_invite(conn, invite["account_id"])
        assert row is not None
        return InviteInfo(
            email=row["email"], role=row["role"], tenant_name=row["name"], expires_at=invite["expires_at"]
        )

    @post("/invite", status_code=200, responses=PUBLIC_ERRORS | problem_responses(404, 410))
    async def accept_invite(
        self, request: Request[Any, Any, Any], api: ApiDep, data: JSONBody[SetPassword]
    ) -> Response[SignedIn]:
        """Set the password with an invitation (once) and sign in; the person's other sessions end."""
        # The raw Request for its address (throttle, audit, the session) and scheme (the cookie's Secure flag).
        state = api
        now = time.time()
        async with state.db().acquire() as conn:
            async with conn.transaction():
                await _throttle(
                    conn,
                    state,
                    [("addr:" + _address(request), state.settings.signin_address_rate_per_minute)],
                )
            async with conn.transaction():
                invite = await _invite(conn, data.token)
                account = await sql.lock_account_for_password(conn, invite["account_id"])
                assert account is not None
                why = password_problem(data.password, account["email"])
                if why is not None:
                    raise validation("password", why)
                digest = await asyncio.to_thread(hash_password, data.password)
                await sql.set_password(conn, account["id"], digest)
                await sql.use_invite(conn, invite["id"])
                ended = await sql.end_sessions(conn, account["id"], "password_set")
                await audit(
                    conn,
                    None,
                    "account.password_set",
                    "account",
                    account["id"],
                    {"email": account["email"], "address": _address(request)},
                    tenant_id=account["tenant_id"],
                )
                session_id, refresh, row = await _start_session(conn, request, state, account)
        if ended:
            await state.publish(
                [SessionsEnded(tenant_id=account["tenant_id"], session_ids=ended, reason="password_set")]
            )
        return _signed_in(request, state, row, session_id, refresh, now)


async def _invite(conn: asyncpg.Connection, token: str) -> asyncpg.Record:
    """The invitation row (its tenant set for the rest of the transaction); 404/410 otherwise."""
    row = await sql.invite(conn, hash_secret(token.strip()))
    if row is None:
        raise Problem(404, "this invitation link is not valid: ask your admin for a new one")
    if row["used_at"] is not None:
        raise Problem(410, "this invitation link was already used or replaced: ask your admin for a new one")
    if row["expires_at"] <= datetime.now(UTC):
        raise Problem(410, "this invitation link has expired: ask your admin for a new one")
    await sql.set_tenant(conn, row["tenant_id"])
    return row

"""Short-lived tokens for browsers: an admin key issues an agent token (`POST /v1/agents/{id}/token`) that the
agent desktop uses to open the signalling websocket. JWT, HS256 with settings.token_secret, at most 15 minutes,
audience-bound, with the agent as subject, the tenant as a claim and a unique jti.

Widget callers: a tenant's public widget key (`pk_...`, services/api/widget.py) is exchanged at
`POST /v1/widget/token` for a token of audience `switchboard:widget` with the caller's session as subject, the
tenant, the widget key (`wk`) and a `queues` claim naming the one allowed queue asked for. Each verifier
checks its own audience, so neither kind of token passes for the other."""

from __future__ import annotations

import enum
import time
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import jwt
import msgspec
from litestar import Controller, post

from services.kernel.ids import new_id

from .auth import admin_only
from .crud import IdParam, path_id
from .deps import ApiDep, CallerDep, TenantConnDep
from .problems import Problem, not_found, problem_responses
from .queries import agents as agent_sql
from .queries import sessions as session_sql
from .turn import ice_servers, turn_credentials

__all__ = [
    "AGENT_AUDIENCE",
    "CONSOLE_AUDIENCE",
    "ISSUER",
    "MAX_TTL_S",
    "WIDGET_AUDIENCE",
    "AgentToken",
    "ConsoleClaims",
    "TokenClaims",
    "TokenController",
    "TokenError",
    "TokenErrorCode",
    "WidgetClaims",
    "console_live",
    "issue_agent_token",
    "issue_widget_token",
    "token_audience",
    "turn_credentials",
    "verify_console_token",
    "verify_token",
    "verify_widget_token",
]

ISSUER = "switchboard"
AGENT_AUDIENCE = "switchboard:agent"
WIDGET_AUDIENCE = "switchboard:widget"
# Supervisors' and admins' browser tokens (signin.py issues them; the console's API calls and its sockets).
CONSOLE_AUDIENCE = "switchboard:console"
# A widget token only has to open the caller's websocket: a few minutes are plenty.
WIDGET_TTL_S = 5 * 60
ALGORITHM = "HS256"
MAX_TTL_S = 15 * 60
DEFAULT_TTL_S = 10 * 60
# HS256 keys shorter than the hash are weak (RFC 7518 3.2): refuse to sign with them.
MIN_SECRET_BYTES = 32


class TokenErrorCode(enum.Enum):
    EXPIRED = "token_expired"
    INVALID = "token_invalid"


class TokenError(Exception):
    def __init__(self, code: TokenErrorCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class WidgetClaims:
    tenant_id: uuid.UUID
    session_id: uuid.UUID  # the widget caller: a fresh id per token
    widget_key_id: uuid.UUID
    queues: tuple[uuid.UUID, ...]
    jti: str
    expires_at: float


@dataclass(frozen=True)
class TokenClaims:
    tenant_id: uuid.UUID
    agent_id: uuid.UUID
    jti: str
    expires_at: float
    # Exactly one of these says where the token came from: a browser session (signin.py; the socket lives
    # as long as that session) or the admin key that issued it (`agents token`; dies with that key).
    session_id: uuid.UUID | None = None
    key_id: uuid.UUID | None = None


@dataclass(frozen=True)
class ConsoleClaims:
    """A supervisor's or admin's browser token: always bound to a browser session (web_sessions)."""

    tenant_id: uuid.UUID
    account_id: uuid.UUID
    role: str
    session_id: uuid.UUID
    jti: str
    expires_at: float


class AgentToken(msgspec.Struct, kw_only=True):
    token: str
    token_type: str
    agent_id: uuid.UUID
    expires_at: float
    expires_in: int
    # RTCPeerConnection iceServers for this agent's browser: TURN with short-lived credentials when the
    # platform has SB_TURN_URLS, else [] (no STUN or TURN server is contacted unless configured).
    ice_servers: list[dict[str, Any]] = []


def _check_secret(secret: str) -> None:
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise Problem(503, "agent tokens are not available: the platform has no token secret configured")


def issue_agent_token(
    secret: str,
    tenant_id: uuid.UUID,
    agent_id: uuid.UUID,
    *,
    now: float,
    ttl: int = DEFAULT_TTL_S,
    session_id: uuid.UUID | None = None,
    key_id: uuid.UUID | None = None,
) -> tuple[str, float]:
    if not 0 < ttl <= MAX_TTL_S:
        raise ValueError(f"token lifetime {ttl} s is outside 1..{MAX_TTL_S}")
    expires = int(now) + ttl
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AGENT_AUDIENCE,
        "sub": str(agent_id),
        "tid": str(tenant_id),
        "jti": str(new_id()),
        "iat": int(now),
        "exp": expires,
    }
    if session_id is not None:
        claims["sid"] = str(session_id)
    if key_id is not None:
        claims["kid"] = str(key_id)
    return jwt.encode(claims, secret, algorithm=ALGORITHM), float(expires)


def token_audience(token: str) -> str | None:
    """The audience a token claims, read WITHOUT checking it (only to pick the verifier, which then checks
    everything); None for anything unreadable."""
    try:
        audience = jwt.decode(token, options={"verify_signature": False}).get("aud")
    except jwt.InvalidTokenError:
        return None
    return audience if isinstance(audience, str) else None


def _decode(secret: str, token: str, audience: str, now: float | None) -> dict[str, Any]:
    """Signature, issuer, audience, expiry and lifetime checked; TokenError otherwise (never which secret)."""
    if not secret:
        raise TokenError(TokenErrorCode.INVALID, "tokens are not configured on this platform")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],  # never "none", never an algorithm the token picks
            audience=audience,
            issuer=ISSUER,
            # Expiry is checked below against `now` (the caller's clock, time.time() by default).
            options={"require": ["exp", "iat", "sub", "aud", "iss", "jti"], "verify_exp": False},
        )
        if not isinstance(claims["exp"], int | float) or claims["exp"] <= (
            time.time() if now is None else now
        ):
            raise jwt.ExpiredSignatureError("Signature has expired")
        if not isinstance(claims["iat"], int | float) or claims["exp"] - claims["iat"] > MAX_TTL_S:
            raise TokenError(TokenErrorCode.INVALID, "the token lives longer than tokens may")
        return claims
    except jwt.ExpiredSignatureError:
        raise TokenError(TokenErrorCode.EXPIRED, "the token has expired: ask for a new one") from None
    except (jwt.InvalidTokenError, KeyError, ValueError, TypeError) as exc:
        raise TokenError(TokenErrorCode.INVALID, f"the token is not valid: {str(exc)[:100]}") from None


def verify_token(secret: str, token: str, *, now: float | None = None) -> TokenClaims:
    """The claims of a valid agent token; TokenError says what is wrong otherwise (never which secret)."""
    claims = _decode(secret, token, AGENT_AUDIENCE, now)
    try:
        return TokenClaims(
            tenant_id=uuid.UUID(str(claims["tid"])),
            agent_id=uuid.UUID(str(claims["sub"])),
            jti=str(claims["jti"]),
            expires_at=float(claims["exp"]),
            session_id=uuid.UUID(str(claims["sid"])) if "sid" in claims else None,
            key_id=uuid.UUID(str(claims["kid"])) if "kid" in claims else None,
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise TokenError(TokenErrorCode.INVALID, f"the token is not valid: {str(exc)[:100]}") from None


def verify_console_token(secret: str, token: str, *, now: float | None = None) -> ConsoleClaims:
    """The claims of a valid console token; the caller still checks that its session is live."""
    claims = _decode(secret, token, CONSOLE_AUDIENCE, now)
    try:
        role = str(claims["role"])
        if role not in ("supervisor", "admin"):
            raise ValueError(f"role {role!r} has no console")
        return ConsoleClaims(
            tenant_id=uuid.UUID(str(claims["tid"])),
            account_id=uuid.UUID(str(claims["sub"])),
            role=role,
            session_id=uuid.UUID(str(claims["sid"])),
            jti=str(claims["jti"]),
            expires_at=float(claims["exp"]),
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise TokenError(TokenErrorCode.INVALID, f"the token is not valid: {str(exc)[:100]}") from None


async def console_live(conn: asyncpg.Connection, claims: ConsoleClaims) -> tuple[str | None, float]:
    """(why a console token may no longer be used, or None; until when its session lasts). `conn` is in the
    token's tenant."""
    row = await session_sql.console_session(conn, claims.session_id, claims.account_id)
    if row is None or row["revoked_at"] is not None:
        return "this session was signed out: sign in again", 0.0
    if row["expires"] <= time.time():
        return "this session has ended: sign in again", 0.0
    if row["role"] != claims.role:
        return "this account's role has changed: sign in again", 0.0
    return None, float(row["expires"])


def issue_widget_token(
    secret: str,
    tenant_id: uuid.UUID,
    widget_key_id: uuid.UUID,
    queue_id: uuid.UUID,
    *,
    now: float,
    ttl: int = WIDGET_TTL_S,
) -> tuple[str, uuid.UUID, float]:
    """A token for one widget caller: (token, the caller's session id, expiry). The subject is a fresh id
    per caller (no person behind it is known); `queues` holds the one queue this caller may reach."""
    if not 0 < ttl <= MAX_TTL_S:
        raise ValueError(f"token lifetime {ttl} s is outside 1..{MAX_TTL_S}")
    session_id = new_id()
    expires = int(now) + ttl
    claims = {
        "iss": ISSUER,
        "aud": WIDGET_AUDIENCE,
        "sub": str(session_id),
        "tid": str(tenant_id),
        "wk": str(widget_key_id),
        "queues": [str(queue_id)],
        "jti": str(new_id()),
        "iat": int(now),
        "exp": expires,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM), session_id, float(expires)


def verify_widget_token(secret: str, token: str, *, now: float | None = None) -> WidgetClaims:
    """The claims of a valid widget token. An agent token is refused here (and a widget token by
    verify_token): the audience differs. Whoever accepts it should also check that the widget key `wk` is
    still not revoked, since a token outlives a revocation by at most its lifetime."""
    claims = _decode(secret, token, WIDGET_AUDIENCE, now)
    try:
        queues = claims["queues"]
        if not isinstance(queues, list) or not queues:
            raise ValueError("the token allows no queue")
        return WidgetClaims(
            tenant_id=uuid.UUID(str(claims["tid"])),
            session_id=uuid.UUID(str(claims["sub"])),
            widget_key_id=uuid.UUID(str(claims["wk"])),
            queues=tuple(uuid.UUID(str(q)) for q in queues),
            jti=str(claims["jti"]),
            expires_at=float(claims["exp"]),
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise TokenError(TokenErrorCode.INVALID, f"the token is not valid: {str(exc)[:100]}") from None


class TokenController(Controller):
    path = "/v1/agents"
    tags = ["agents"]

    @post(
        "/{agent_id:str}/token",
        status_code=201,
        guards=[admin_only],
        responses=problem_responses(401, 403, 404, 503),
        summary="Issue a short-lived token for an agent's browser (signalling websocket)",
    )
    async def issue(
        self, api: ApiDep, principal: CallerDep, tenant_conn: TenantConnDep, agent_id: IdParam
    ) -> AgentToken:
        _check_secret(api.settings.token_secret)
        object_id = path_id(agent_id, "agent")
        if not await agent_sql.exists(tenant_conn, object_id):
            raise not_found("agent")
        now = time.time()
        token, expires = issue_agent_token(
            api.settings.token_secret, principal.tenant_id, object_id, now=now, key_id=principal.key_id
        )
        return AgentToken(
            token=token,
            token_type="Bearer",
            agent_id=object_id,
            expires_at=expires,
            expires_in=int(expires - now),
            ice_servers=ice_servers(api.settings, str(object_id), now),
        )

"""Short-lived tokens for browsers: an admin key issues an agent token (`POST /v1/agents/{id}/token`) that the
agent desktop uses to open the signalling websocket. JWT, HS256 with settings.token_secret, at most 15 minutes,
audience-bound, with the agent as subject, the tenant as a claim and a unique jti.

Widget callers (to do, issue 4 item 1): a per-tenant public widget key that can only start calls to the
queues the tenant allows, exchanged for a token of audience `switchboard:widget` with the same verifier and a
`queues` claim. Not built yet: the widget-key table and its API come with the browser-apps work."""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
import msgspec
from litestar import Controller, Request, post

from services.kernel.db import tenant_tx
from services.kernel.ids import new_id

from .auth import admin_only, principal_of
from .crud import IdParam, path_id
from .problems import Problem, not_found, problem_responses
from .state import api_state

__all__ = [
    "AGENT_AUDIENCE",
    "ISSUER",
    "MAX_TTL_S",
    "AgentToken",
    "TokenClaims",
    "TokenController",
    "TokenError",
    "TokenErrorCode",
    "issue_agent_token",
    "turn_credentials",
    "verify_token",
]

ISSUER = "switchboard"
AGENT_AUDIENCE = "switchboard:agent"
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
class TokenClaims:
    tenant_id: uuid.UUID
    agent_id: uuid.UUID
    jti: str
    expires_at: float


class AgentToken(msgspec.Struct, kw_only=True):
    token: str
    token_type: str
    agent_id: uuid.UUID
    expires_at: float
    expires_in: int


def _check_secret(secret: str) -> None:
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise Problem(503, "agent tokens are not available: the platform has no token secret configured")


def issue_agent_token(
    secret: str, tenant_id: uuid.UUID, agent_id: uuid.UUID, *, now: float, ttl: int = DEFAULT_TTL_S
) -> tuple[str, float]:
    if not 0 < ttl <= MAX_TTL_S:
        raise ValueError(f"token lifetime {ttl} s is outside 1..{MAX_TTL_S}")
    expires = int(now) + ttl
    claims = {
        "iss": ISSUER,
        "aud": AGENT_AUDIENCE,
        "sub": str(agent_id),
        "tid": str(tenant_id),
        "jti": str(new_id()),
        "iat": int(now),
        "exp": expires,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM), float(expires)


def verify_token(secret: str, token: str, *, now: float | None = None) -> TokenClaims:
    """The claims of a valid agent token; TokenError says what is wrong otherwise (never which secret)."""
    if not secret:
        raise TokenError(TokenErrorCode.INVALID, "tokens are not configured on this platform")
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],  # never "none", never an algorithm the token picks
            audience=AGENT_AUDIENCE,
            issuer=ISSUER,
            # Expiry is checked below against `now` (the caller's clock, time.time() by default).
            options={"require": ["exp", "iat", "sub", "aud", "iss", "jti"], "verify_exp": False},
        )
        if not isinstance(claims["exp"], int | float) or claims["exp"] <= (
            time.time() if now is None else now
        ):
            raise jwt.ExpiredSignatureError("Signature has expired")
        if claims["exp"] - claims["iat"] > MAX_TTL_S:
            raise TokenError(TokenErrorCode.INVALID, "the token lives longer than agent tokens may")
        return TokenClaims(
            tenant_id=uuid.UUID(str(claims["tid"])),
            agent_id=uuid.UUID(str(claims["sub"])),
            jti=str(claims["jti"]),
            expires_at=float(claims["exp"]),
        )
    except jwt.ExpiredSignatureError:
        raise TokenError(TokenErrorCode.EXPIRED, "the token has expired: ask for a new one") from None
    except (jwt.InvalidTokenError, KeyError, ValueError, TypeError) as exc:
        raise TokenError(TokenErrorCode.INVALID, f"the token is not valid: {str(exc)[:100]}") from None


def turn_credentials(turn_secret: str, user: str, *, now: float, ttl: int = 3600) -> tuple[str, str, float]:
    """TURN credentials in the coturn REST scheme (`use-auth-secret` / `static-auth-secret`): username
    `<expiry unix time>:<user>`, password base64(HMAC-SHA1(secret, username)). The TURN server checks the
    HMAC and the expiry itself, so nothing is stored. For home agents behind NAT; wired into the token
    response once TURN servers are part of the platform's configuration."""
    if not turn_secret:
        raise ValueError("no TURN secret configured")
    if ":" in user or not user:
        raise ValueError("the TURN user must be non-empty and contain no ':'")
    expires = int(now) + ttl
    username = f"{expires}:{user}"
    digest = hmac.new(turn_secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode(), float(expires)


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
    async def issue(self, request: Request[Any, Any, Any], agent_id: IdParam) -> AgentToken:
        principal = principal_of(request)
        state = api_state(request)
        _check_secret(state.settings.token_secret)
        object_id = path_id(agent_id, "agent")
        async with tenant_tx(state.db(), principal.tenant_id, readonly=True) as conn:
            found = await conn.fetchval("SELECT 1 FROM agents WHERE id = $1", object_id)
        if found is None:
            raise not_found("agent")
        now = time.time()
        token, expires = issue_agent_token(
            state.settings.token_secret, principal.tenant_id, object_id, now=now
        )
        return AgentToken(
            token=token,
            token_type="Bearer",
            agent_id=object_id,
            expires_at=expires,
            expires_in=int(expires - now),
        )

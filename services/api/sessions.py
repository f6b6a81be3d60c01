"""Browser sessions, the decisions only (sans-IO: time comes in as `now`, nothing here touches a socket or
the database): the refresh-token format, what a presented refresh token means for its session, what a
sign-in attempt means for its account, and the password rules. signin.py does the I/O around them.

A session lasts a shift (`session_ttl_s`). The browser holds a refresh token `<session id>.<secret>` in an
HttpOnly cookie and trades it at /v1/auth/refresh for a short access token and a new refresh token; the
old secret is kept (hashed) as used, and a used secret presented again revokes the session (the token was
copied: RFC 9700 4.14.2). One exception: the secret just traded, presented once more within a short grace
(`refresh_grace_s`), is the browser retrying a refresh whose answer it lost (a dropped connection, a tab
closed mid-request): it gets the same successor again, which is why a successor is derived from its
predecessor (`successor`) rather than drawn at random."""

from __future__ import annotations

import base64
import enum
import functools
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

__all__ = [
    "MAX_PASSWORD",
    "MIN_PASSWORD",
    "Attempt",
    "RefreshOutcome",
    "SigninOutcome",
    "decide_refresh",
    "decide_signin",
    "hash_password",
    "hash_secret",
    "new_refresh",
    "parse_refresh",
    "password_problem",
    "successor",
    "verify_password",
]

MIN_PASSWORD = 10
MAX_PASSWORD = 256
# argon2-cffi's defaults are RFC 9106's second recommended profile (argon2id, 64 MiB, t=3, p=4).
_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Verified when the email is unknown, so that a miss costs as much time as a wrong password. Made on
    first use: hashing at import cost every API process a tenth of a second (more on a busy machine) at
    start-up."""
    return _hasher.hash("switchboard-dummy-password")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored: str | None, password: str) -> tuple[bool, str | None]:
    """(matches, a new hash when the stored one uses older parameters). CPU-heavy: run it off the loop."""
    try:
        _hasher.verify(stored or _dummy_hash(), password)
    except (VerificationError, InvalidHashError):
        return False, None
    if stored is None:
        return False, None
    return True, (_hasher.hash(password) if _hasher.check_needs_rehash(stored) else None)


def password_problem(password: str, email: str) -> str | None:
    """Why a new password is refused, or None. Length is what matters (NIST SP 800-63B 5.1.1.2)."""
    if len(password) < MIN_PASSWORD:
        return f"use at least {MIN_PASSWORD} characters"
    if len(password) > MAX_PASSWORD:
        return f"use at most {MAX_PASSWORD} characters"
    if len(set(password)) < 4:
        return "use more than three different characters"
    if password.strip().lower() == email.strip().lower() or password.lower() in email.lower():
        return "do not use your email address as the password"
    return None


def hash_secret(secret: str) -> bytes:
    # Refresh secrets and invitation tokens are 256-bit random: a fast hash is safe for them.
    return hashlib.sha256(secret.encode()).digest()


def new_refresh(session_id: uuid.UUID) -> tuple[str, bytes]:
    """A refresh token for the session and the hash to store."""
    secret = secrets.token_urlsafe(32)
    return f"{session_id}.{secret}", hash_secret(secret)


def successor(key: str, session_id: uuid.UUID, presented: bytes) -> tuple[str, bytes]:
    """The refresh token that follows the one whose hash is `presented`, and its hash: a keyed hash of it,
    so the same predecessor always yields the same successor and nobody without `key` can compute it."""
    mac = hmac.new(key.encode(), b"refresh-successor:" + session_id.bytes + presented, hashlib.sha256)
    secret = base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()
    return f"{session_id}.{secret}", hash_secret(secret)


def parse_refresh(token: str | None) -> tuple[uuid.UUID, bytes] | None:
    """(session id, hash of the secret) of a well-formed refresh token, else None."""
    if not token or len(token) > 200:
        return None
    sid, _, secret = token.partition(".")
    if not secret:
        return None
    try:
        return uuid.UUID(sid), hash_secret(secret)
    except ValueError:
        return None


class RefreshOutcome(enum.Enum):
    ROTATE = "rotate"  # the current secret: issue an access token and a new refresh token
    GRACE = "grace"  # the secret just traded, once, soon after: the same successor again (a lost answer)
    REUSED = "reused"  # a secret already traded: revoke the session
    UNKNOWN = "unknown"  # not this session's secret at all
    REVOKED = "revoked"
    EXPIRED = "expired"


def decide_refresh(
    *,
    presented: bytes,
    current: bytes,
    used: list[bytes],
    revoked: bool,
    expires_at: float,
    now: float,
    rotated_at: float = 0.0,
    grace_spent: bool = True,
    grace_s: float = 0.0,
) -> RefreshOutcome:
    """`used` newest first; `rotated_at` is when the current secret was issued."""
    if revoked:
        return RefreshOutcome.REVOKED
    if now >= expires_at:
        return RefreshOutcome.EXPIRED
    if secrets.compare_digest(presented, current):
        return RefreshOutcome.ROTATE
    if (
        used
        and secrets.compare_digest(presented, used[0])
        and not grace_spent
        and now - rotated_at <= grace_s
    ):
        return RefreshOutcome.GRACE
    if any(secrets.compare_digest(presented, h) for h in used):
        return RefreshOutcome.REUSED
    return RefreshOutcome.UNKNOWN


class SigninOutcome(enum.Enum):
    OK = "ok"
    WRONG = "wrong"  # wrong password (or no account, or no password set yet): one message for all
    LOCKED = "locked"  # locked before this attempt: the password was not even checked
    NOW_LOCKED = "now_locked"  # this failure reached the limit


@dataclass(frozen=True)
class Attempt:
    outcome: SigninOutcome
    failures: int  # consecutive failures after this attempt
    locked_until: float | None


def decide_signin(
    *,
    matches: bool | None,
    failures: int,
    locked_until: float | None,
    now: float,
    lock_after: int,
    lock_s: float,
) -> Attempt:
    """`matches` is None when the account is locked and the password was therefore not verified."""
    if locked_until is not None and now < locked_until:
        return Attempt(SigninOutcome.LOCKED, failures, locked_until)
    if matches:
        return Attempt(SigninOutcome.OK, 0, None)
    failures += 1
    if failures >= lock_after:
        return Attempt(SigninOutcome.NOW_LOCKED, 0, now + lock_s)
    return Attempt(SigninOutcome.WRONG, failures, None)

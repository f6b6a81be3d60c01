"""The session decisions (services/api/sessions.py): refresh rotation and reuse, sign-in lockout, passwords."""

from __future__ import annotations

import uuid

from services.api.sessions import (
    RefreshOutcome,
    SigninOutcome,
    decide_refresh,
    decide_signin,
    hash_password,
    new_refresh,
    parse_refresh,
    password_problem,
    successor,
    verify_password,
)


def test_refresh_rotates_current_revokes_reused_refuses_unknown_revoked_and_expired() -> None:
    sid = uuid.uuid4()
    token, current = new_refresh(sid)
    parsed = parse_refresh(token)
    assert parsed is not None and parsed[0] == sid and parsed[1] == current
    _, old = new_refresh(sid)
    _, other = new_refresh(sid)
    base = {"current": current, "used": [old], "revoked": False, "expires_at": 100.0, "now": 50.0}
    assert decide_refresh(presented=current, **base) is RefreshOutcome.ROTATE
    assert decide_refresh(presented=old, **base) is RefreshOutcome.REUSED
    assert decide_refresh(presented=other, **base) is RefreshOutcome.UNKNOWN
    assert decide_refresh(presented=current, **{**base, "revoked": True}) is RefreshOutcome.REVOKED
    assert decide_refresh(presented=current, **{**base, "now": 100.0}) is RefreshOutcome.EXPIRED
    for bad in (None, "", "no-dot", "not-a-uuid.secret", f"{sid}.", "x" * 300):
        assert parse_refresh(bad) is None


def test_the_secret_just_traded_gets_one_grace_soon_after_and_the_same_successor() -> None:
    sid = uuid.uuid4()
    _, older = new_refresh(sid)
    _, previous = new_refresh(sid)
    token, current = successor("k" * 32, sid, previous)
    # The successor is a function of its predecessor (and the key): a retry gets the same one.
    assert successor("k" * 32, sid, previous) == (token, current)
    assert successor("j" * 32, sid, previous)[1] != current
    assert parse_refresh(token) == (sid, current)
    base = {
        "current": current,
        "used": [previous, older],
        "revoked": False,
        "expires_at": 1000.0,
        "rotated_at": 100.0,
        "grace_spent": False,
        "grace_s": 10.0,
    }
    assert decide_refresh(presented=previous, now=105.0, **base) is RefreshOutcome.GRACE
    # Once only, only soon after, only the one just traded, and not at all without a grace.
    assert (
        decide_refresh(presented=previous, now=105.0, **{**base, "grace_spent": True})
        is RefreshOutcome.REUSED
    )
    assert decide_refresh(presented=previous, now=110.5, **base) is RefreshOutcome.REUSED
    assert decide_refresh(presented=older, now=105.0, **base) is RefreshOutcome.REUSED
    assert decide_refresh(presented=previous, now=100.0, **{**base, "grace_s": 0.0}) is RefreshOutcome.GRACE
    assert decide_refresh(presented=previous, now=100.1, **{**base, "grace_s": 0.0}) is RefreshOutcome.REUSED
    assert decide_refresh(presented=current, now=105.0, **base) is RefreshOutcome.ROTATE


def test_signin_locks_after_the_limit_and_refuses_while_locked() -> None:
    rule = {"lock_after": 3, "lock_s": 60.0}
    a = decide_signin(matches=False, failures=0, locked_until=None, now=0.0, **rule)
    assert (a.outcome, a.failures) == (SigninOutcome.WRONG, 1)
    a = decide_signin(matches=False, failures=2, locked_until=None, now=10.0, **rule)
    assert (a.outcome, a.locked_until) == (SigninOutcome.NOW_LOCKED, 70.0)
    a = decide_signin(matches=None, failures=0, locked_until=70.0, now=69.0, **rule)
    assert a.outcome is SigninOutcome.LOCKED and a.locked_until == 70.0
    a = decide_signin(matches=True, failures=2, locked_until=70.0, now=70.0, **rule)
    assert (a.outcome, a.failures, a.locked_until) == (SigninOutcome.OK, 0, None)


def test_passwords() -> None:
    assert password_problem("short", "a@b.example")
    assert password_problem("aaaaaaaaaaaa", "a@b.example")
    assert password_problem("ada@shop.example", "Ada@Shop.example")
    assert password_problem("x" * 257 + "abcd", "a@b.example")
    assert password_problem("correct horse battery", "a@b.example") is None
    stored = hash_password("correct horse battery")
    assert stored.startswith("$argon2id$")
    assert verify_password(stored, "correct horse battery") == (True, None)
    assert verify_password(stored, "correct horse batterY") == (False, None)
    assert verify_password(None, "anything at all") == (False, None)
    assert verify_password("not a hash", "anything at all") == (False, None)

"""Sans-IO pieces added for load and outbound calls: admission (503 shedding), the number-route cache,
and answering a trunk's digest challenge."""

from __future__ import annotations

import hashlib
import time
import uuid

import pytest

from services.media.sip.auth import Credentials, build_challenge, compute_ha1, verify_authorization
from services.media.ua.admission import AdmissionController, Decision
from services.media.ua.store import NumberRoute, RouteCache, Trunk
from services.media.ua.trunk_auth import answer_challenge, parse_challenge


def test_admission_sheds_on_calls_setup_and_lag() -> None:
    ctl = AdmissionController(max_calls=10, max_setup=3, max_lag=0.1)
    assert ctl.check(calls=9, setting_up=2).admitted
    full = ctl.check(calls=10, setting_up=0)
    assert (full.decision, full.retry_after, full.reason) == (
        Decision.CAPACITY,
        5,
        "Service Unavailable (capacity)",
    )
    assert ctl.check(calls=0, setting_up=3).decision is Decision.SETUP
    ctl.observe_lag(0.5)  # one slow probe is enough to shed at once...
    assert ctl.check(calls=0, setting_up=0).decision is Decision.LAG
    for _ in range(10):  # ...and the smoothed lag decays when the loop keeps up again
        ctl.observe_lag(0.0)
    assert ctl.check(calls=0, setting_up=0).admitted
    ctl.observe_cpu(0.1, 0.1)  # one busy probe is not saturation
    assert ctl.check(calls=0, setting_up=0).admitted
    for _ in range(10):  # a core kept busy is
        ctl.observe_cpu(0.1, 0.1)
    assert ctl.check(calls=0, setting_up=0).decision is Decision.CPU
    for _ in range(5):
        ctl.observe_cpu(0.05, 0.1)
    assert ctl.check(calls=0, setting_up=0).admitted
    assert ctl.shed == {Decision.CAPACITY: 1, Decision.SETUP: 1, Decision.LAG: 1, Decision.CPU: 1}
    off = AdmissionController(max_calls=10, max_lag=0, max_cpu=0)  # 0 disables a signal
    off.observe_lag(5.0)
    off.observe_cpu(1.0, 1.0)
    assert off.check(calls=0, setting_up=0).admitted
    with pytest.raises(ValueError):
        AdmissionController(max_calls=1, max_setup=0)


def _route(tenant: uuid.UUID, e164: str) -> NumberRoute:
    return NumberRoute(tenant, uuid.uuid4(), e164, None, None, 5, ())


def test_route_cache_expiry_and_invalidation() -> None:
    cache = RouteCache(ttl=60, negative_ttl=5)
    a, b = uuid.uuid4(), uuid.uuid4()
    assert cache.get("+1", 0.0) == (False, None)
    cache.put("+1", _route(a, "+1"), 0.0)
    cache.put("+2", _route(b, "+2"), 0.0)
    cache.put("+3", None, 0.0)  # no such number
    assert cache.get("+1", 59.0)[0] and cache.get("+3", 4.0) == (True, None)
    assert cache.get("+3", 5.0) == (False, None)  # negative entries live briefly
    cache.put("+3", None, 10.0)
    assert cache.invalidate_tenant(a) == 2  # a's number and the negative entry
    assert cache.get("+1", 11.0) == (False, None) and cache.get("+3", 11.0) == (False, None)
    assert cache.get("+2", 11.0)[1] is not None  # another tenant's route stays
    assert cache.get("+2", 60.0) == (False, None)


def _trunk(**kw: object) -> Trunk:
    base: dict[str, object] = {
        "id": uuid.uuid4(),
        "name": "c",
        "allowed_ips": (),
        "username": "u",
        "realm": "r.example",
        "ha1_sha256": compute_ha1("u", "r.example", "pw", "SHA-256"),
        "ha1_md5": compute_ha1("u", "r.example", "pw", "MD5"),
        "outbound_host": "127.0.0.1",
        "outbound_port": 5060,
    }
    base.update(kw)
    return Trunk(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("algorithms", [("MD5", "SHA-256"), ("MD5",), ("SHA-256",)])
def test_answer_challenge_is_accepted_by_our_verifier(algorithms: tuple[str, ...]) -> None:
    secret, now = b"s", time.time()
    challenges = [build_challenge("r.example", secret, now, algorithm=a, opaque="op") for a in algorithms]
    trunk = _trunk()
    value = answer_challenge(challenges, trunk, method="INVITE", uri="sip:+1@h", cnonce="abc")
    assert value is not None
    assert ("SHA-256" if "SHA-256" in algorithms else "MD5") in value and 'opaque="op"' in value
    creds = Credentials("u", ha1=(("SHA-256", trunk.ha1_sha256 or ""), ("MD5", trunk.ha1_md5 or "")))
    result = verify_authorization(
        value,
        method="INVITE",
        realm="r.example",
        secret=secret,
        now=now,
        credentials=creds,
        request_uri="sip:+1@h",
    )
    assert result.ok, result.reason


def test_answer_challenge_without_qop_and_refusals() -> None:
    trunk = _trunk()
    value = answer_challenge(
        ['Digest realm="r.example", nonce="n1"'], trunk, method="INVITE", uri="sip:x", cnonce="c"
    )
    ha2 = hashlib.md5(b"INVITE:sip:x").hexdigest()
    expected = hashlib.md5(f"{trunk.ha1_md5}:n1:{ha2}".encode()).hexdigest()
    assert value is not None and f'response="{expected}"' in value and "qop" not in value
    # Another realm, an unknown scheme, auth-int only, or a trunk without credentials: no answer.
    assert (
        answer_challenge(['Digest realm="other", nonce="n"'], trunk, method="INVITE", uri="u", cnonce="c")
        is None
    )
    assert answer_challenge(['Basic realm="r.example"'], trunk, method="INVITE", uri="u", cnonce="c") is None
    only_int = ['Digest realm="r.example", nonce="n", qop="auth-int"']
    assert answer_challenge(only_int, trunk, method="INVITE", uri="u", cnonce="c") is None
    assert (
        answer_challenge(
            ['Digest realm="r.example", nonce="n"'],
            _trunk(username=None, realm=None),
            method="INVITE",
            uri="u",
            cnonce="c",
        )
        is None
    )
    assert parse_challenge('Digest realm="a\\"b", nonce=xyz, qop="auth,auth-int"') == {
        "realm": 'a"b',
        "nonce": "xyz",
        "qop": "auth,auth-int",
    }
    assert parse_challenge("Digest realm=") is None and parse_challenge('Digest nonce="n"') is None

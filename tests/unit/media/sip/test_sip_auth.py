"""Server-side digest (RFC 8760 SHA-256 and MD5, RFC 7616 qop): challenges, verification, stale nonces."""

from __future__ import annotations

import hashlib

import pytest

from services.media.sip import (
    Credentials,
    NonceCounter,
    build_challenges,
    compute_ha1,
    parse_authorization,
    verify_authorization,
)
from services.media.sip.auth import DigestResponse, _expected, build_challenge, make_nonce

REALM = "acme.switchboard"
SECRET = b"node-secret"
URI = "sip:+15550100@127.0.0.1"
CREDS = Credentials("trunk1", password="s3cret")
NOW = 1_700_000_000.0


def h(algorithm: str, text: str) -> str:
    return hashlib.new("md5" if algorithm.upper().startswith("MD5") else "sha256", text.encode()).hexdigest()


def authorization(
    nonce: str,
    *,
    username: str = "trunk1",
    password: str = "s3cret",
    realm: str = REALM,
    method: str = "INVITE",
    uri: str = URI,
    algorithm: str = "SHA-256",
    qop: str | None = "auth",
    nc: str = "00000001",
    cnonce: str = "0a4f113b",
) -> str:
    """What a UAC sends, computed here independently of the module under test."""
    ha1 = h(algorithm, f"{username}:{realm}:{password}")
    ha2 = h(algorithm, f"{method}:{uri}")
    if qop:
        response = h(algorithm, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
        extra = f', qop={qop}, nc={nc}, cnonce="{cnonce}"'
    else:
        response = h(algorithm, f"{ha1}:{nonce}:{ha2}")
        extra = ""
    return (
        f'Digest username="{username}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
        f'response="{response}", algorithm={algorithm}{extra}'
    )


def verify(value: str, **kwargs: object) -> tuple[bool, str, bool]:
    options: dict[str, object] = {
        "method": "INVITE",
        "realm": REALM,
        "secret": SECRET,
        "now": NOW + 10,
        "credentials": CREDS,
        "request_uri": URI,
    }
    result = verify_authorization(value, **(options | kwargs))  # type: ignore[arg-type]
    return result.ok, result.reason, result.stale


def test_challenges_offer_sha256_then_md5_with_one_nonce() -> None:
    sha, md5 = build_challenges(REALM, SECRET, NOW)
    assert (
        sha.startswith(f'Digest realm="{REALM}", nonce="')
        and "algorithm=SHA-256" in sha
        and 'qop="auth"' in sha
    )
    assert "algorithm=MD5" in md5
    nonce = sha.split('nonce="')[1].split('"')[0]
    assert f'nonce="{nonce}"' in md5
    assert "stale=TRUE" in build_challenges(REALM, SECRET, NOW, stale=True)[0]
    with pytest.raises(ValueError):
        build_challenge(REALM, SECRET, NOW, algorithm="SHA-512-256")


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
@pytest.mark.parametrize("qop", ["auth", None])
def test_valid_credentials(algorithm: str, qop: str | None) -> None:
    nonce = make_nonce(SECRET, NOW, realm=REALM)
    assert verify(authorization(nonce, algorithm=algorithm, qop=qop)) == (True, "ok", False)


def test_precomputed_ha1_and_lookup_by_username() -> None:
    nonce = make_nonce(SECRET, NOW, realm=REALM)
    stored = Credentials("trunk1", ha1=(("SHA-256", compute_ha1("trunk1", REALM, "s3cret", "SHA-256")),))
    assert verify(authorization(nonce), credentials=stored)[0]
    # Only a SHA-256 HA1 is stored: an MD5 answer cannot be checked.
    assert verify(authorization(nonce, algorithm="MD5"), credentials=stored)[:2] == (
        False,
        "no secret for this algorithm",
    )
    users = {"trunk1": CREDS}
    assert verify(authorization(nonce), credentials=users.get)[0]
    assert verify(authorization(nonce, username="ghost"), credentials=users.get)[:2] == (
        False,
        "unknown user",
    )


def test_wrong_password() -> None:
    nonce = make_nonce(SECRET, NOW, realm=REALM)
    assert verify(authorization(nonce, password="guess")) == (False, "wrong credentials", False)
    assert verify(authorization(nonce, algorithm="MD5", password="guess"))[:2] == (False, "wrong credentials")


def test_stale_nonce_with_right_password_asks_for_a_new_challenge() -> None:
    nonce = make_nonce(SECRET, NOW, realm=REALM)
    assert verify(authorization(nonce), now=NOW + 301) == (False, "stale nonce", True)
    assert verify(authorization(nonce), now=NOW + 60, max_age=30) == (False, "stale nonce", True)
    # A wrong password on an old nonce is just wrong: no hint that a retry would work.
    assert verify(authorization(nonce, password="guess"), now=NOW + 301) == (
        False,
        "wrong credentials",
        False,
    )


def test_nonces_we_did_not_mint_are_refused() -> None:
    forged = make_nonce(b"other-secret", NOW, realm=REALM)
    assert verify(authorization(forged))[:2] == (False, "invalid nonce")
    other_realm = make_nonce(SECRET, NOW, realm="other")
    assert verify(authorization(other_realm))[:2] == (False, "invalid nonce")
    future = make_nonce(SECRET, NOW + 3600, realm=REALM)
    assert verify(authorization(future))[:2] == (False, "invalid nonce")
    assert verify(authorization("not-a-nonce"))[:2] == (False, "invalid nonce")


def test_request_mismatches() -> None:
    nonce = make_nonce(SECRET, NOW, realm=REALM)
    assert verify(authorization(nonce, realm="evil"))[:2] == (False, "realm mismatch")
    assert verify(authorization(nonce, uri="sip:other@127.0.0.1"))[:2] == (
        False,
        "digest uri does not match the Request-URI",
    )
    assert verify(authorization(nonce, method="BYE"))[:2] == (False, "wrong credentials")
    assert verify(authorization(nonce, algorithm="MD5"), algorithms=("SHA-256",))[:2] == (
        False,
        "unsupported algorithm",
    )
    assert verify(authorization(nonce, qop="auth-conf"))[:2] == (False, "unsupported qop")


def test_nonce_count_replay_is_refused_when_tracked() -> None:
    nonce = make_nonce(SECRET, NOW, realm=REALM)
    counter = NonceCounter(max_nonces=2)
    assert verify(authorization(nonce, nc="00000001"), nonce_counter=counter)[0]
    assert verify(authorization(nonce, nc="00000001"), nonce_counter=counter)[:2] == (
        False,
        "nonce count replayed",
    )
    assert verify(authorization(nonce, nc="00000002"), nonce_counter=counter)[0]
    assert verify(authorization(nonce, nc="zz"), nonce_counter=counter)[:2] == (False, "invalid nonce count")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "unsupported authorization scheme"),
        ("Basic dXNlcjpwYXNz", "unsupported authorization scheme"),
        ("NoOneKnowsThisScheme opaque-data=here", "unsupported authorization scheme"),
        ("Digest", "malformed authorization header"),
        ('Digest username="a', "malformed authorization header: unterminated quoted string"),
        (
            'Digest username="a" realm="b"',
            "malformed authorization header: expected ',' in authorization parameters",
        ),
        ('Digest username="a", username="b"', "duplicate username parameter"),
        ('Digest username="a", realm="b"', "missing nonce, uri, response"),
        ("Digest " + "x=1, " * 2000, "authorization header too long"),
    ],
)
def test_malformed_authorization_is_a_reason_not_an_exception(value: str, reason: str) -> None:
    assert parse_authorization(value) == reason
    ok, why, _ = verify(value)
    assert not ok and why == reason


def test_rfc7616_vectors() -> None:
    # RFC 7616 §3.9.1: the same request answered with SHA-256 and with MD5.
    for algorithm, expected in (
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
    ):
        digest = DigestResponse(
            username="Mufasa",
            realm="http-auth@example.org",
            nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
            uri="/dir/index.html",
            response=expected,
            algorithm=algorithm,
            cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
            qop="auth",
            nc="00000001",
        )
        ha1 = compute_ha1("Mufasa", "http-auth@example.org", "Circle of Life", algorithm)
        assert _expected(digest, ha1, "GET", b"") == expected


def test_sess_and_auth_int_variants() -> None:
    nonce = make_nonce(SECRET, NOW, realm=REALM)
    ha1 = h("SHA-256", f"trunk1:{REALM}:s3cret")
    sess_ha1 = h("SHA-256", f"{ha1}:{nonce}:c1")
    ha2 = h("SHA-256", f"INVITE:{URI}:{hashlib.sha256(b'v=0').hexdigest()}")
    response = h("SHA-256", f"{sess_ha1}:{nonce}:00000001:c1:auth-int:{ha2}")
    value = (
        f'Digest username="trunk1", realm="{REALM}", nonce="{nonce}", uri="{URI}", response="{response}", '
        f'algorithm=SHA-256-sess, qop=auth-int, nc=00000001, cnonce="c1"'
    )
    assert verify(value, body=b"v=0", algorithms=("SHA-256-sess",))[0]
    assert not verify(value, body=b"v=1", algorithms=("SHA-256-sess",))[0]

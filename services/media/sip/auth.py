"""Server-side HTTP Digest for SIP (RFC 3261 §22, RFC 8760 SHA-256, RFC 7616 qop/-sess), sans-IO.

Nonces are stateless: `<hex time>.<salt>.<HMAC(secret, time, salt, realm)>`, so any media node holding
the secret can verify them and expiry is checked against the `now` passed in. Verification never
raises: malformed input is a failed `AuthResult` with a reason for the logs. A password or precomputed
HA1 per algorithm is looked up by username (per tenant: one realm and lookup per tenant).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from services.media.sip.errors import SipParseError
from services.media.sip.headers import Scanner, quote, unquote

__all__ = [
    "ALGORITHMS",
    "AuthResult",
    "Credentials",
    "DigestResponse",
    "NonceCounter",
    "build_challenge",
    "build_challenges",
    "compute_ha1",
    "make_nonce",
    "parse_authorization",
    "verify_authorization",
]

ALGORITHMS = ("SHA-256", "MD5")  # offered in this order: RFC 8760 §2.4 puts the strongest first
_HASHES: dict[str, Callable[[bytes], str]] = {
    "MD5": lambda data: hashlib.md5(data, usedforsecurity=False).hexdigest(),
    "SHA-256": lambda data: hashlib.sha256(data).hexdigest(),
}
_MAX_HEADER = 4096


def _hash(algorithm: str, text: str | bytes) -> str:
    base = algorithm.upper().removesuffix("-SESS")
    # surrogatepass: a value decoded leniently upstream must still hash (and fail), not raise.
    return _HASHES[base](text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text)


def _supported(algorithm: str) -> bool:
    return algorithm.upper().removesuffix("-SESS") in _HASHES


def compute_ha1(username: str, realm: str, password: str, algorithm: str = "SHA-256") -> str:
    """H(username:realm:password): what to store instead of the password, one per algorithm."""
    return _hash(algorithm, f"{username}:{realm}:{password}")


@dataclass(frozen=True)
class Credentials:
    """One user's secret: the password, or precomputed HA1 values keyed by algorithm ("MD5", "SHA-256")."""

    username: str
    password: str | None = None
    ha1: tuple[tuple[str, str], ...] = ()

    def ha1_for(self, algorithm: str, realm: str) -> str | None:
        base = algorithm.upper().removesuffix("-SESS")
        for alg, value in self.ha1:
            if alg.upper() == base:
                return value.lower()
        if self.password is not None:
            return compute_ha1(self.username, realm, self.password, base)
        return None


# --- nonces ----------------------------------------------------------------------------------------


def _nonce_mac(secret: bytes, stamp: str, salt: str, realm: str) -> str:
    message = f"{stamp}.{salt}.{realm}".encode("utf-8", "surrogatepass")
    return hmac.new(secret, message, hashlib.sha256).hexdigest()[:32]


def make_nonce(secret: bytes, now: float, *, realm: str, salt: bytes | None = None) -> str:
    stamp = format(int(now), "x")
    salt_hex = (salt if salt is not None else os.urandom(6)).hex()
    return f"{stamp}.{salt_hex}.{_nonce_mac(secret, stamp, salt_hex, realm)}"


def _nonce_age(nonce: str, secret: bytes, now: float, realm: str) -> float | None:
    """Seconds since the nonce was minted, or None if we did not mint it."""
    parts = nonce.split(".")
    if len(parts) != 3 or not parts[0] or len(parts[0]) > 16:
        return None
    stamp, salt, mac = parts
    try:
        issued = int(stamp, 16)
    except ValueError:
        return None
    if not hmac.compare_digest(
        mac.encode("utf-8", "surrogatepass"), _nonce_mac(secret, stamp, salt, realm).encode()
    ):
        return None
    return now - issued


def build_challenge(
    realm: str,
    secret: bytes,
    now: float,
    *,
    algorithm: str = "SHA-256",
    stale: bool = False,
    qop: str = "auth",
    opaque: str | None = None,
    nonce: str | None = None,
) -> str:
    """One WWW-Authenticate (or Proxy-Authenticate) value."""
    if not _supported(algorithm):
        raise ValueError(f"unsupported digest algorithm {algorithm}")
    parts = [
        f"realm={quote(realm)}",
        f"nonce={quote(nonce or make_nonce(secret, now, realm=realm))}",
        f"algorithm={algorithm}",
    ]
    if qop:
        parts.append(f"qop={quote(qop)}")
    if opaque is not None:
        parts.append(f"opaque={quote(opaque)}")
    if stale:
        parts.append("stale=TRUE")
    return "Digest " + ", ".join(parts)


def build_challenges(
    realm: str, secret: bytes, now: float, *, algorithms: Sequence[str] = ALGORITHMS, stale: bool = False
) -> list[str]:
    """One challenge per algorithm (SHA-256 then MD5), sharing one nonce: add each as its own header."""
    nonce = make_nonce(secret, now, realm=realm)
    return [build_challenge(realm, secret, now, algorithm=a, stale=stale, nonce=nonce) for a in algorithms]


# --- Authorization ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DigestResponse:
    """The parameters of an `Authorization: Digest ...` value, unquoted."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str = "MD5"
    cnonce: str | None = None
    qop: str | None = None
    nc: str | None = None
    opaque: str | None = None


@dataclass(frozen=True)
class AuthResult:
    ok: bool
    reason: str = ""
    username: str | None = None
    stale: bool = False  # right credentials on an expired nonce: challenge again with stale=TRUE


def parse_authorization(value: str) -> DigestResponse | str:
    """The Digest parameters of an Authorization value, or the reason it cannot be used."""
    if len(value) > _MAX_HEADER:
        return "authorization header too long"
    s = Scanner(value)
    s.skip_ws()
    scheme = s.token()
    if scheme.lower() != "digest":
        return "unsupported authorization scheme"
    params: dict[str, str] = {}
    try:
        while True:
            s.skip_ws()
            name = s.token().lower()
            if not name:
                return "malformed authorization header"
            s.skip_ws()
            s.expect("=", "authorization parameter")
            s.skip_ws()
            raw = s.quoted() if s.peek() == '"' else s.take_until(" \t,")
            if name in params:
                return f"duplicate {name} parameter"
            params[name] = unquote(raw)
            s.skip_ws()
            if s.at_end():
                break
            s.expect(",", "authorization parameters")
    except SipParseError as err:
        return f"malformed authorization header: {err.reason}"
    missing = [p for p in ("username", "realm", "nonce", "uri", "response") if not params.get(p)]
    if missing:
        return f"missing {', '.join(missing)}"
    return DigestResponse(
        username=params["username"],
        realm=params["realm"],
        nonce=params["nonce"],
        uri=params["uri"],
        response=params["response"].lower(),
        algorithm=params.get("algorithm", "MD5"),
        cnonce=params.get("cnonce"),
        qop=params.get("qop"),
        nc=params.get("nc"),
        opaque=params.get("opaque"),
    )


class NonceCounter:
    """Optional replay protection for qop=auth: each (nonce, nc) is accepted once and nc must grow.

    Bounded: at most `max_nonces` nonces are remembered, oldest forgotten first (a forgotten nonce is
    then refused as stale only when it also expired, so the bound trades memory for replay window).
    """

    def __init__(self, max_nonces: int = 10000) -> None:
        self.max_nonces = max_nonces
        self._last: OrderedDict[str, int] = OrderedDict()

    def accept(self, nonce: str, nc: int) -> bool:
        last = self._last.get(nonce)
        if last is not None and nc <= last:
            return False
        self._last[nonce] = nc
        self._last.move_to_end(nonce)
        while len(self._last) > self.max_nonces:
            self._last.popitem(last=False)
        return True


def _expected(digest: DigestResponse, ha1: str, method: str, body: bytes) -> str | None:
    alg = digest.algorithm
    if alg.upper().endswith("-SESS"):
        if not digest.cnonce:
            return None
        ha1 = _hash(alg, f"{ha1}:{digest.nonce}:{digest.cnonce}")
    qop = digest.qop.lower() if digest.qop else None
    if qop == "auth-int":
        ha2 = _hash(alg, f"{method}:{digest.uri}:{_hash(alg, body)}")
    else:
        ha2 = _hash(alg, f"{method}:{digest.uri}")
    if qop is None:
        return _hash(alg, f"{ha1}:{digest.nonce}:{ha2}")
    if not digest.cnonce or not digest.nc:
        return None
    return _hash(alg, f"{ha1}:{digest.nonce}:{digest.nc}:{digest.cnonce}:{qop}:{ha2}")


def verify_authorization(
    value: str,
    *,
    method: str,
    realm: str,
    secret: bytes,
    now: float,
    credentials: Credentials | Callable[[str], Credentials | None],
    max_age: float = 300.0,
    request_uri: str | None = None,
    body: bytes = b"",
    algorithms: Sequence[str] = ALGORITHMS,
    nonce_counter: NonceCounter | None = None,
) -> AuthResult:
    """Check an Authorization (or Proxy-Authorization) value for a request with `method`.

    `credentials` is the user's (or a lookup by username). `request_uri`, when given, must equal the
    digest uri. A right answer on an expired nonce gives `stale=True` so the adapter re-challenges
    without asking the caller for a new password.
    """
    parsed = parse_authorization(value)
    if isinstance(parsed, str):
        return AuthResult(False, parsed)
    if parsed.realm != realm:
        return AuthResult(False, "realm mismatch", parsed.username)
    if parsed.algorithm.upper() not in {a.upper() for a in algorithms} or not _supported(parsed.algorithm):
        return AuthResult(False, "unsupported algorithm", parsed.username)
    if parsed.qop is not None and parsed.qop.lower() not in ("auth", "auth-int"):
        return AuthResult(False, "unsupported qop", parsed.username)
    if request_uri is not None and parsed.uri != request_uri:
        return AuthResult(False, "digest uri does not match the Request-URI", parsed.username)
    age = _nonce_age(parsed.nonce, secret, now, realm)
    if age is None or age < -5:
        return AuthResult(False, "invalid nonce", parsed.username)
    creds = credentials(parsed.username) if callable(credentials) else credentials
    if creds is None or creds.username != parsed.username:
        return AuthResult(False, "unknown user", parsed.username)
    ha1 = creds.ha1_for(parsed.algorithm, realm)
    if ha1 is None:
        return AuthResult(False, "no secret for this algorithm", parsed.username)
    expected = _expected(parsed, ha1, method, body)
    if expected is None:
        return AuthResult(False, "qop without cnonce or nc", parsed.username)
    if not hmac.compare_digest(expected.encode(), parsed.response.encode("utf-8", "surrogatepass")):
        return AuthResult(False, "wrong credentials", parsed.username)
    if age > max_age:
        return AuthResult(False, "stale nonce", parsed.username, stale=True)
    if nonce_counter is not None and parsed.qop is not None:
        nc_text = parsed.nc or ""
        try:
            nc = int(nc_text, 16)
        except ValueError:
            return AuthResult(False, "invalid nonce count", parsed.username)
        if not nonce_counter.accept(parsed.nonce, nc):
            return AuthResult(False, "nonce count replayed", parsed.username)
    return AuthResult(True, "ok", parsed.username)

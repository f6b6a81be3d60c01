# One DTLS certificate for a process's WebRTC legs, replaced on a schedule (docs/media.md, "Leg set-up and
# teardown"). aiortc 1.16 makes a new EC key and self-signed certificate for every RTCPeerConnection, then
# per DTLS transport a new OpenSSL context from it (key and certificate converted again) and its three
# fingerprints in Python, twice per leg: about 0.5 ms of CPU a leg, for nothing a peer can check better.
# Browsers keep one certificate per origin for long; a worker does the same for `lifetime_s` (the
# SB_MEDIA_DTLS_CERT_ROTATE_S setting, 24 h by default), then makes a new one for the legs that follow
# (a leg keeps the certificate it was made with: its handshake used it and ICE restarts reuse it).
# What stays per leg: the DTLS handshake (ECDHE, so each leg's SRTP keys are its own) and the peer's
# fingerprint check. The private key lives in this process's memory only; nothing writes it anywhere.
from __future__ import annotations

import contextvars

import aiortc
from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc import rtcpeerconnection as aiortc_peer
from aiortc.rtcdtlstransport import (
    RTCCertificate,
    RTCDtlsFingerprint,
    SRTPProtectionProfile,
    generate_certificate,
)
from cryptography.hazmat.primitives.asymmetric import ec
from OpenSSL import SSL

from .config import UnsupportedVersionError

__all__ = ["MAX_LIFETIME_S", "ROTATION", "CertificateRotation", "SharedCertificate", "peer_connection"]

SUPPORTED_AIORTC = ("1.16.",)
# aiortc's certificates are valid 30 days from their making; a rotation well inside that.
MAX_LIFETIME_S = 7 * 86400.0


class SharedCertificate(RTCCertificate):
    """An RTCCertificate for many legs: its fingerprints and its OpenSSL context are made once. The
    context's session cache is off, as with aiortc's context per leg: no DTLS session of one leg is ever
    resumed by another."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, created: float) -> None:
        super().__init__(key=key, cert=generate_certificate(key))
        self.created = created
        self._fingerprints = tuple(super().getFingerprints())
        self._contexts: dict[tuple[bytes, ...], SSL.Context] = {}

    def getFingerprints(self) -> list[RTCDtlsFingerprint]:
        return [RTCDtlsFingerprint(f.algorithm, f.value) for f in self._fingerprints]

    def _create_ssl_context(self, srtp_profiles: list[SRTPProtectionProfile]) -> SSL.Context:
        profiles = tuple(p.openssl_profile for p in srtp_profiles)
        context = self._contexts.get(profiles)
        if context is None:
            context = super()._create_ssl_context(srtp_profiles)
            context.set_session_cache_mode(SSL.SESS_CACHE_OFF)
            self._contexts[profiles] = context
        return context


class CertificateRotation:
    """Which certificate a new leg gets at `now` (monotonic seconds): the current one until it is
    `lifetime_s` old, then a new one. `lifetime_s` 0: none (aiortc makes one per leg)."""

    def __init__(self) -> None:
        self._current: SharedCertificate | None = None

    def current(self, lifetime_s: float, now: float) -> SharedCertificate | None:
        if not 0 <= lifetime_s <= MAX_LIFETIME_S:
            raise ValueError(
                f"a DTLS certificate lifetime of {lifetime_s:g} s is outside 0-{MAX_LIFETIME_S:g}"
            )
        if lifetime_s == 0:
            return None
        if self._current is None or now - self._current.created >= lifetime_s or now < self._current.created:
            self._current = SharedCertificate(ec.generate_private_key(ec.SECP256R1()), created=now)
        return self._current


# The process's rotation: every WebRtcLeg of a worker takes its certificate from here.
ROTATION = CertificateRotation()
# The certificate the next RTCPeerConnection of this task takes instead of making one (see _Given).
_given: contextvars.ContextVar[RTCCertificate | None] = contextvars.ContextVar(
    "dtls_certificate", default=None
)
_installed = False


class _Given(RTCCertificate):
    """Put in aiortc.rtcpeerconnection's namespace: RTCPeerConnection.__init__ calls
    `RTCCertificate.generateCertificate()` there, and gets the given certificate when there is one."""

    @classmethod
    def generateCertificate(cls) -> RTCCertificate:  # type: ignore[override]
        given = _given.get()
        return given if given is not None else RTCCertificate.generateCertificate()


def _install() -> None:
    global _installed
    if _installed:
        return
    version = getattr(aiortc, "__version__", "unknown")
    if not version.startswith(SUPPORTED_AIORTC) or aiortc_peer.RTCCertificate is not RTCCertificate:  # type: ignore[attr-defined]
        raise UnsupportedVersionError(
            f"the shared DTLS certificate is checked against aiortc {', '.join(SUPPORTED_AIORTC)}x, this is "
            f"aiortc {version}: re-check RTCPeerConnection.__init__ and update SUPPORTED_AIORTC"
        )
    aiortc_peer.RTCCertificate = _Given  # type: ignore[attr-defined]
    _installed = True


def peer_connection(configuration: RTCConfiguration, certificate: RTCCertificate | None) -> RTCPeerConnection:
    """An RTCPeerConnection whose DTLS transports use `certificate` (None: a new one, aiortc's way)."""
    if certificate is None:
        return RTCPeerConnection(configuration)
    _install()
    token = _given.set(certificate)
    try:
        pc = RTCPeerConnection(configuration)
    finally:
        _given.reset(token)
    if pc._RTCPeerConnection__certificates != [certificate]:  # type: ignore[attr-defined]
        raise UnsupportedVersionError("aiortc's RTCPeerConnection did not take the given DTLS certificate")
    return pc

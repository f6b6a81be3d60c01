"""Typed configuration, read once from the environment (SB_*)."""

from __future__ import annotations

import hashlib
import ipaddress
import os
from pathlib import Path

import msgspec

__all__ = ["ConfigError", "Settings", "advertised_host", "load_settings", "machine_ipv4", "sip_digest_key"]


class ConfigError(ValueError):
    """A SB_* variable is missing or malformed."""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    # PostgreSQL URL the services use: a role that is neither table owner nor superuser (RLS applies).
    database_url: str = ""
    # Owner URL, used only to bootstrap roles and apply migrations.
    database_admin_url: str = ""
    nats_url: str = "nats://127.0.0.1:4222"
    data_dir: Path = Path(".switchboard")
    bind_host: str = "127.0.0.1"
    # The address SIP peers and callers' RTP reach this process at (SDP c=, Via, Contact; a media worker's
    # link to its front). Empty: bind_host, unless that is 0.0.0.0 or ::, which no peer can send to
    # (advertised_host). The chart sets it from the pod IP.
    advertise_host: str = ""
    http_port: int = 8080
    sip_port: int = 5060
    # Secret for short-lived tokens (agents, supervisors, widget callers); the runtime generates one.
    token_secret: str = ""
    log_level: str = "info"
    service_name: str = "switchboard"
    # Requests per minute per client address at the unauthenticated edges (signup).
    signup_rate_per_minute: int = 10
    # Widget tokens per minute per client address (`POST /v1/widget/token`, unauthenticated).
    widget_token_rate_per_minute: int = 60
    # Requests per minute per API key (each API process), unless the tenant's plan says otherwise
    # (tenants.api_rate_per_minute).
    key_rate_per_minute: int = 600
    # WebRTC legs one agent socket may hold at once (the API refuses further offers on it).
    webrtc_legs_per_socket: int = 4
    # Per-source SIP limit (the SIP front before dispatch, and a single-process media service): a token
    # bucket of `sip_burst` refilled at `sip_rate` requests/s; past it 503, and after `sip_ban_after`
    # rejections the source is ignored for `sip_ban_seconds` (docs/security.md).
    sip_rate: float = 50.0
    sip_burst: float = 100.0
    sip_ban_after: int = 50
    sip_ban_seconds: float = 60.0
    # A SIP call that receives no RTP or RTCP for this long, while not on hold, is ended (cause
    # media_timeout): the caller vanished without a BYE. 0 turns the check off.
    media_timeout_s: float = 30.0
    # The media service (docs/media.md, "Configuration"). RTP ports (even, RTCP on +1) of this process.
    rtp_port_min: int = 20000
    rtp_port_max: int = 30000
    # Admission (services/media/ua/admission.py): calls, INVITEs in set-up, event-loop lag and CPU use
    # (seconds per second, smoothed) past which new INVITEs get 503. 0 turns lag or CPU shedding off.
    media_max_calls: int = 1000
    media_max_setup: int = 200
    media_max_lag_ms: float = 250.0
    media_max_cpu: float = 0.95
    # SIP digest: the realm, and the secret that signs nonces. Every worker must share the secret (a nonce
    # issued by one is verified by another behind the front): `switchboard up` sets it; without it, it is
    # derived from SB_TOKEN_SECRET; without either the media service refuses to start.
    sip_realm: str = "switchboard"
    sip_digest_secret: str = ""
    # RFC 4028 Min-SE (at least 2 here; RFC 4028 asks for 90).
    sip_min_se: int = 90
    # What a caller of a number with no flow and no queue hears ("": the built-in apology).
    unrouted_message: str = ""
    # WebRTC legs (docs/webrtc.md): legs one agent may hold in a worker; ICE host addresses (comma-separated,
    # "auto": aioice's discovery); ICE servers (space-separated url[|username|credential]; none: never a
    # public STUN server); the codec preferred: g711 (the SIP leg's law) or opus; the media path: own (aiortc
    # for ICE and DTLS, our RTP/SRTP for media) or aiortc (its RTP stack too, kept for comparison).
    webrtc_legs_per_agent: int = 4
    media_ice_hosts: str = "127.0.0.1"
    media_ice_servers: str = ""
    media_webrtc_codec: str = "g711"
    media_webrtc_path: str = "own"
    # libopus encoder complexity on Opus WebRTC legs (0-10; docs/media.md "Opus at 8 kHz").
    media_opus_complexity: int = 1
    # ICE consent freshness (RFC 7675, docs/media.md "ICE consent and restarts"): a check every interval
    # (randomised 0.8-1.2x), the leg ends after this many unanswered in a row (aioice's own 5 s and 6:
    # about 33 s, at most 45 s, after a peer goes silent). Tests shorten them.
    media_ice_consent_interval_s: float = 5.0
    media_ice_consent_failures: int = 6
    # The DTLS certificate all WebRTC legs of a worker share, replaced after this many seconds (docs/media.md
    # "Leg set-up and teardown"; a leg keeps the one it was made with). 0: a new key and certificate per leg.
    media_dtls_cert_rotate_s: float = 86400.0
    # Sharding (docs/media.md, "Sharding"): this process's site; a worker's id behind the SIP front (empty:
    # a single media process binds the SIP port itself) and its link port (0: any free port); how long the
    # front waits for a silent worker's registration before declaring it lost.
    site: str = "default"
    media_worker_id: str = ""
    media_link_port: int = 0
    media_worker_stale_s: float = 5.0
    # Forwarding headers (X-Forwarded-For, X-Forwarded-Proto) are believed only from these peers:
    # comma-separated addresses or networks (the ingress). Empty: from nobody, every client is the peer.
    trusted_proxies: str = ""
    # Services /healthz waits for (comma-separated); `switchboard up --services` narrows it.
    expected_services: str = "media,routing,ivr,contacts,recording,reporting"
    # JetStream replicas for the platform's streams and buckets (3 on a NATS cluster).
    jetstream_replicas: int = 1
    # Routing partitions: the NATS subject mapping and the routing workers must agree on it (1-1024).
    routing_partition_count: int = 16
    # TURN for browsers behind NAT (coturn REST scheme, `use-auth-secret`): space-separated turn:/turns:
    # URLs (none: no TURN server is offered), the secret shared with the TURN server, credential lifetime.
    turn_urls: str = ""
    turn_secret: str = ""
    turn_ttl_s: int = 600
    # Recordings (docs/recording.md): the master key file that wraps tenants' data keys (default
    # <data dir>/keys/recording-master.key, made 0600 on first start); where sealed recordings are kept
    # (default file:<data dir>/recordings; s3://bucket[/prefix] with the SB_S3_* settings); how long a
    # signed playback URL lives.
    recording_key_file: str = ""
    # Master keys being retired (comma-separated files): they still unwrap the data keys they wrapped until
    # `switchboard recordings rewrap` (or the recording service at start) moves those under the current one.
    recording_old_key_files: str = ""
    # A master key other than the key file (a cloud KMS): `package.module:factory`, a callable taking the
    # Settings and returning a services.recording.vault.MasterKey. Empty: the key file.
    recording_master_key: str = ""
    recording_store: str = ""
    recording_url_ttl_s: int = 300
    # How often media syncs a recorded call's spool and ships it as a chunk: what a crash of a media worker
    # can lose at most (about twice this), against the worker's CPU (one fsync and one JetStream publish per
    # recorded call per interval; docs/recording.md, "Benchmark").
    recording_flush_s: float = 2.0
    s3_endpoint_url: str = ""
    s3_region: str = "us-east-1"
    s3_access_key_id: str = ""
    s3_secret_access_key: str = ""
    # Browser sign-in (services/api/signin.py): a session lasts a shift; its access tokens are short and
    # refreshed in the background with a rotating refresh token.
    session_ttl_s: int = 12 * 3600
    access_token_ttl_s: int = 300
    # The refresh token just traded is accepted once more within this many seconds (the browser lost the
    # answer): it gets the same successor. 0 turns the grace off.
    refresh_grace_s: int = 10
    # Sign-in attempts per minute per account and per client address (counted in PostgreSQL, so across
    # API processes), and consecutive failures that lock an account for signin_lock_s.
    signin_rate_per_minute: int = 10
    signin_address_rate_per_minute: int = 30
    signin_lock_failures: int = 5
    signin_lock_s: int = 15 * 60
    # One-time invitation links (set a password) stay valid this long.
    invite_ttl_s: int = 72 * 3600
    # How often an API process tells routing which agent sockets it holds; each report holds three beats
    # (services/api/presence.py). Shorter only in tests that starve the process past its lease.
    presence_beat_s: float = 5.0
    # The reporting service (docs/reporting.md): its JetStream consumers' names (the ingest's and the webhook
    # deliveries'; tests give each stack its own), and the first retry's delay of a failed webhook
    # delivery (doubling after; tests make it short).
    reporting_durable: str = "reporting"
    webhooks_durable: str = "webhook_events"
    webhook_backoff_s: float = 2.0

    @property
    def turn_url_list(self) -> tuple[str, ...]:
        return tuple(self.turn_urls.split())

    @property
    def trusted_proxy_list(self) -> tuple[str, ...]:
        return tuple(p.strip() for p in self.trusted_proxies.split(",") if p.strip())

    @property
    def expected_service_names(self) -> tuple[str, ...]:
        return tuple(s.strip() for s in self.expected_services.split(",") if s.strip())


_ENV: dict[str, tuple[str, type]] = {
    "database_url": ("SB_DATABASE_URL", str),
    "database_admin_url": ("SB_DATABASE_ADMIN_URL", str),
    "nats_url": ("SB_NATS_URL", str),
    "data_dir": ("SB_DATA_DIR", Path),
    "bind_host": ("SB_BIND_HOST", str),
    "advertise_host": ("SB_ADVERTISE_HOST", str),
    "http_port": ("SB_HTTP_PORT", int),
    "sip_port": ("SB_SIP_PORT", int),
    "token_secret": ("SB_TOKEN_SECRET", str),
    "log_level": ("SB_LOG_LEVEL", str),
    "service_name": ("SB_SERVICE_NAME", str),
    "signup_rate_per_minute": ("SB_SIGNUP_RATE_PER_MINUTE", int),
    "widget_token_rate_per_minute": ("SB_WIDGET_TOKEN_RATE_PER_MINUTE", int),
    "key_rate_per_minute": ("SB_KEY_RATE_PER_MINUTE", int),
    "webrtc_legs_per_socket": ("SB_WEBRTC_LEGS_PER_SOCKET", int),
    "sip_rate": ("SB_SIP_RATE", float),
    "sip_burst": ("SB_SIP_BURST", float),
    "sip_ban_after": ("SB_SIP_BAN_AFTER", int),
    "sip_ban_seconds": ("SB_SIP_BAN_SECONDS", float),
    "media_timeout_s": ("SB_MEDIA_TIMEOUT_S", float),
    "rtp_port_min": ("SB_RTP_PORT_MIN", int),
    "rtp_port_max": ("SB_RTP_PORT_MAX", int),
    "media_max_calls": ("SB_MEDIA_MAX_CALLS", int),
    "media_max_setup": ("SB_MEDIA_MAX_SETUP", int),
    "media_max_lag_ms": ("SB_MEDIA_MAX_LAG_MS", float),
    "media_max_cpu": ("SB_MEDIA_MAX_CPU", float),
    "sip_realm": ("SB_SIP_REALM", str),
    "sip_digest_secret": ("SB_SIP_DIGEST_SECRET", str),
    "sip_min_se": ("SB_SIP_MIN_SE", int),
    "unrouted_message": ("SB_UNROUTED_MESSAGE", str),
    "webrtc_legs_per_agent": ("SB_WEBRTC_LEGS_PER_AGENT", int),
    "media_ice_hosts": ("SB_MEDIA_ICE_HOSTS", str),
    "media_ice_servers": ("SB_MEDIA_ICE_SERVERS", str),
    "media_webrtc_codec": ("SB_MEDIA_WEBRTC_CODEC", str),
    "media_webrtc_path": ("SB_MEDIA_WEBRTC_PATH", str),
    "media_opus_complexity": ("SB_MEDIA_OPUS_COMPLEXITY", int),
    "media_ice_consent_interval_s": ("SB_MEDIA_ICE_CONSENT_INTERVAL_S", float),
    "media_ice_consent_failures": ("SB_MEDIA_ICE_CONSENT_FAILURES", int),
    "media_dtls_cert_rotate_s": ("SB_MEDIA_DTLS_CERT_ROTATE_S", float),
    "site": ("SB_SITE", str),
    "media_worker_id": ("SB_MEDIA_WORKER_ID", str),
    "media_link_port": ("SB_MEDIA_LINK_PORT", int),
    "media_worker_stale_s": ("SB_MEDIA_WORKER_STALE_S", float),
    "trusted_proxies": ("SB_TRUSTED_PROXIES", str),
    "expected_services": ("SB_EXPECTED_SERVICES", str),
    "jetstream_replicas": ("SB_JETSTREAM_REPLICAS", int),
    "routing_partition_count": ("SB_ROUTING_PARTITION_COUNT", int),
    "turn_urls": ("SB_TURN_URLS", str),
    "turn_secret": ("SB_TURN_SECRET", str),
    "turn_ttl_s": ("SB_TURN_TTL_S", int),
    "recording_key_file": ("SB_RECORDING_KEY_FILE", str),
    "recording_old_key_files": ("SB_RECORDING_OLD_KEY_FILES", str),
    "recording_master_key": ("SB_RECORDING_MASTER_KEY", str),
    "recording_store": ("SB_RECORDING_STORE", str),
    "recording_url_ttl_s": ("SB_RECORDING_URL_TTL_S", int),
    "recording_flush_s": ("SB_RECORDING_FLUSH_S", float),
    "s3_endpoint_url": ("SB_S3_ENDPOINT_URL", str),
    "s3_region": ("SB_S3_REGION", str),
    "s3_access_key_id": ("SB_S3_ACCESS_KEY_ID", str),
    "s3_secret_access_key": ("SB_S3_SECRET_ACCESS_KEY", str),
    "session_ttl_s": ("SB_SESSION_TTL_S", int),
    "access_token_ttl_s": ("SB_ACCESS_TOKEN_TTL_S", int),
    "refresh_grace_s": ("SB_REFRESH_GRACE_S", int),
    "signin_rate_per_minute": ("SB_SIGNIN_RATE_PER_MINUTE", int),
    "signin_address_rate_per_minute": ("SB_SIGNIN_ADDRESS_RATE_PER_MINUTE", int),
    "signin_lock_failures": ("SB_SIGNIN_LOCK_FAILURES", int),
    "signin_lock_s": ("SB_SIGNIN_LOCK_S", int),
    "invite_ttl_s": ("SB_INVITE_TTL_S", int),
    "presence_beat_s": ("SB_PRESENCE_BEAT_S", float),
    "reporting_durable": ("SB_REPORTING_DURABLE", str),
    "webhooks_durable": ("SB_WEBHOOKS_DURABLE", str),
    "webhook_backoff_s": ("SB_WEBHOOK_BACKOFF_S", float),
}


def load_settings(env: dict[str, str] | None = None, **overrides: object) -> Settings:
    """Build Settings from `env` (default os.environ); keyword overrides win over the environment."""
    source = os.environ if env is None else env
    values: dict[str, object] = {}
    for field, (var, kind) in _ENV.items():
        raw = source.get(var)
        if raw is None or raw == "":
            continue
        try:
            values[field] = kind(raw)
        except ValueError as exc:
            raise ConfigError(f"{var}={raw!r} is not a valid {kind.__name__}") from exc
    values.update(overrides)
    settings = Settings(**values)  # type: ignore[arg-type]
    for name in ("http_port", "sip_port"):
        port = getattr(settings, name)
        if not 0 <= port <= 65535:
            raise ConfigError(f"{_ENV[name][0]}={port} is outside 0-65535")
    if (
        settings.sip_rate <= 0
        or settings.sip_burst < 1
        or settings.sip_ban_after < 1
        or settings.sip_ban_seconds < 0
    ):
        raise ConfigError(
            "SB_SIP_RATE > 0, SB_SIP_BURST >= 1, SB_SIP_BAN_AFTER >= 1 and SB_SIP_BAN_SECONDS >= 0 are required"
        )
    if settings.key_rate_per_minute < 1:
        raise ConfigError(f"SB_KEY_RATE_PER_MINUTE={settings.key_rate_per_minute} must be at least 1")
    for proxy in settings.trusted_proxy_list:
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise ConfigError(f"SB_TRUSTED_PROXIES: {proxy!r} is not an IP address or network") from None
    if not (settings.media_timeout_s == 0 or 2 <= settings.media_timeout_s <= 3600):
        raise ConfigError(
            f"SB_MEDIA_TIMEOUT_S={settings.media_timeout_s:g} must be 0 (off) or 2-3600 seconds"
        )
    if settings.jetstream_replicas not in (1, 3, 5):
        raise ConfigError(f"SB_JETSTREAM_REPLICAS={settings.jetstream_replicas} must be 1, 3 or 5")
    if not 1 <= settings.routing_partition_count <= 1024:
        raise ConfigError(f"SB_ROUTING_PARTITION_COUNT={settings.routing_partition_count} is outside 1-1024")
    if not 60 <= settings.turn_ttl_s <= 86400:
        raise ConfigError(f"SB_TURN_TTL_S={settings.turn_ttl_s} is outside 60-86400")
    if not 0.2 <= settings.recording_flush_s <= 10:
        raise ConfigError(f"SB_RECORDING_FLUSH_S={settings.recording_flush_s:g} is outside 0.2-10 seconds")
    if not 10 <= settings.recording_url_ttl_s <= 86400:
        raise ConfigError(f"SB_RECORDING_URL_TTL_S={settings.recording_url_ttl_s} is outside 10-86400")
    if settings.recording_store and not settings.recording_store.startswith(("file:", "s3://")):
        raise ConfigError(
            f"SB_RECORDING_STORE={settings.recording_store!r} is neither file:PATH nor s3://BUCKET"
        )
    if not 5 <= settings.access_token_ttl_s <= 900:
        raise ConfigError(f"SB_ACCESS_TOKEN_TTL_S={settings.access_token_ttl_s} is outside 5-900")
    if not 0.5 <= settings.presence_beat_s <= 60:
        raise ConfigError(f"SB_PRESENCE_BEAT_S={settings.presence_beat_s:g} is outside 0.5-60 seconds")
    if not 0.01 <= settings.webhook_backoff_s <= 3600:
        raise ConfigError(f"SB_WEBHOOK_BACKOFF_S={settings.webhook_backoff_s:g} is outside 0.01-3600 seconds")
    if not 0 <= settings.refresh_grace_s <= 60:
        raise ConfigError(f"SB_REFRESH_GRACE_S={settings.refresh_grace_s} is outside 0-60")
    if not settings.access_token_ttl_s < settings.session_ttl_s <= 7 * 86400:
        raise ConfigError(
            f"SB_SESSION_TTL_S={settings.session_ttl_s} is outside the access token's lifetime-7 days"
        )
    _check_media(settings)
    if settings.advertise_host.strip() and _unspecified(settings.advertise_host.strip()):
        raise ConfigError(
            f"SB_ADVERTISE_HOST={settings.advertise_host!r} is the any-address: give the address peers reach"
        )
    bad = [u for u in settings.turn_url_list if not u.startswith(("turn:", "turns:"))]
    if bad:
        raise ConfigError(f"SB_TURN_URLS: {bad[0]!r} is not a turn: or turns: URL")
    if settings.turn_url_list and not settings.turn_secret:
        raise ConfigError("SB_TURN_URLS is set but SB_TURN_SECRET is not")
    return settings


def _check_media(settings: Settings) -> None:
    if not 1024 <= settings.rtp_port_min < settings.rtp_port_max <= 65535:
        raise ConfigError(
            f"SB_RTP_PORT_MIN={settings.rtp_port_min} and SB_RTP_PORT_MAX={settings.rtp_port_max}: "
            "need 1024 <= min < max <= 65535"
        )
    if settings.media_max_calls < 1 or settings.media_max_setup < 1:
        raise ConfigError("SB_MEDIA_MAX_CALLS and SB_MEDIA_MAX_SETUP must be at least 1")
    if settings.media_max_lag_ms < 0 or settings.media_max_cpu < 0:
        raise ConfigError("SB_MEDIA_MAX_LAG_MS and SB_MEDIA_MAX_CPU must be 0 (off) or more")
    if settings.sip_min_se < 2:
        raise ConfigError(f"SB_SIP_MIN_SE={settings.sip_min_se} is under 2 seconds")
    if not settings.sip_realm.strip() or '"' in settings.sip_realm:
        raise ConfigError(f"SB_SIP_REALM={settings.sip_realm!r} must be a non-empty name without quotes")
    if settings.media_webrtc_codec.strip().lower() not in ("g711", "opus"):
        raise ConfigError(f"SB_MEDIA_WEBRTC_CODEC={settings.media_webrtc_codec!r} is neither g711 nor opus")
    if settings.media_webrtc_path.strip().lower() not in ("own", "aiortc"):
        raise ConfigError(f"SB_MEDIA_WEBRTC_PATH={settings.media_webrtc_path!r} is neither own nor aiortc")
    if not 0 <= settings.media_opus_complexity <= 10:
        raise ConfigError(f"SB_MEDIA_OPUS_COMPLEXITY={settings.media_opus_complexity} is outside 0-10")
    if not 0 < settings.media_ice_consent_interval_s <= 60 or settings.media_ice_consent_failures < 1:
        raise ConfigError(
            f"SB_MEDIA_ICE_CONSENT_INTERVAL_S={settings.media_ice_consent_interval_s:g} must be in (0, 60] and "
            f"SB_MEDIA_ICE_CONSENT_FAILURES={settings.media_ice_consent_failures} at least 1"
        )
    if not 0 <= settings.media_dtls_cert_rotate_s <= 7 * 86400:
        raise ConfigError(
            f"SB_MEDIA_DTLS_CERT_ROTATE_S={settings.media_dtls_cert_rotate_s:g} must be within 0-604800 (7 days; "
            "0: a certificate per leg)"
        )
    if settings.webrtc_legs_per_agent < 1:
        raise ConfigError(f"SB_WEBRTC_LEGS_PER_AGENT={settings.webrtc_legs_per_agent} must be at least 1")
    worker_id = settings.media_worker_id.strip()
    if worker_id and not worker_id.replace("-", "").replace("_", "").isalnum():
        raise ConfigError(f"SB_MEDIA_WORKER_ID={worker_id!r}: letters, digits, '-' and '_' only (a KV key)")
    if not 0 <= settings.media_link_port <= 65535:
        raise ConfigError(f"SB_MEDIA_LINK_PORT={settings.media_link_port} is outside 0-65535")
    if settings.media_worker_stale_s <= 0:
        raise ConfigError(f"SB_MEDIA_WORKER_STALE_S={settings.media_worker_stale_s:g} must be above 0")


def _unspecified(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:  # a host name
        return False


def advertised_host(settings: Settings, machine: list[str] | tuple[str, ...] = ()) -> str:
    """The address to announce in SDP and SIP headers: SB_ADVERTISE_HOST, else SB_BIND_HOST when it names one
    address. Bound to every interface without SB_ADVERTISE_HOST: the first non-loopback address among
    `machine` (machine_ipv4()), else ConfigError: a
    c=IN IP4 0.0.0.0 would send a caller's audio nowhere."""
    if settings.advertise_host.strip():
        return settings.advertise_host.strip()
    if not _unspecified(settings.bind_host):
        return settings.bind_host
    for address in machine:
        if not ipaddress.ip_address(address).is_loopback:
            return address
    raise ConfigError(
        f"SB_BIND_HOST={settings.bind_host} listens on every interface and no other address of this machine "
        "was found: set SB_ADVERTISE_HOST to the address callers reach"
    )


def machine_ipv4() -> tuple[str, ...]:
    """This machine's IPv4 addresses, interface by interface (psutil; no packet is sent)."""
    import socket

    import psutil

    return tuple(
        a.address for addrs in psutil.net_if_addrs().values() for a in addrs if a.family == socket.AF_INET
    )


def sip_digest_key(settings: Settings) -> bytes:
    """The key that signs SIP digest nonces, the same in every media worker of a platform: from
    SB_SIP_DIGEST_SECRET, else derived from SB_TOKEN_SECRET. Neither set: ConfigError (a per-process random
    key would make a nonce issued by one worker fail at another)."""
    secret = settings.sip_digest_secret or settings.token_secret
    if not secret:
        raise ConfigError(
            "the media service needs SB_SIP_DIGEST_SECRET (or SB_TOKEN_SECRET to derive it from)"
        )
    return hashlib.sha256(f"sip-digest|{secret}".encode()).digest()


def to_env(settings: Settings) -> dict[str, str]:
    """The SB_* variables that reproduce `settings` in a child process."""
    out: dict[str, str] = {}
    for field, (var, _kind) in _ENV.items():
        out[var] = str(getattr(settings, field))
    return out

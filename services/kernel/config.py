"""Typed configuration, read once from the environment (SB_*)."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import msgspec

__all__ = ["ConfigError", "Settings", "load_settings"]


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
    "trusted_proxies": ("SB_TRUSTED_PROXIES", str),
    "expected_services": ("SB_EXPECTED_SERVICES", str),
    "jetstream_replicas": ("SB_JETSTREAM_REPLICAS", int),
    "routing_partition_count": ("SB_ROUTING_PARTITION_COUNT", int),
    "turn_urls": ("SB_TURN_URLS", str),
    "turn_secret": ("SB_TURN_SECRET", str),
    "turn_ttl_s": ("SB_TURN_TTL_S", int),
    "recording_key_file": ("SB_RECORDING_KEY_FILE", str),
    "recording_old_key_files": ("SB_RECORDING_OLD_KEY_FILES", str),
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
    if not 0 <= settings.refresh_grace_s <= 60:
        raise ConfigError(f"SB_REFRESH_GRACE_S={settings.refresh_grace_s} is outside 0-60")
    if not settings.access_token_ttl_s < settings.session_ttl_s <= 7 * 86400:
        raise ConfigError(
            f"SB_SESSION_TTL_S={settings.session_ttl_s} is outside the access token's lifetime-7 days"
        )
    bad = [u for u in settings.turn_url_list if not u.startswith(("turn:", "turns:"))]
    if bad:
        raise ConfigError(f"SB_TURN_URLS: {bad[0]!r} is not a turn: or turns: URL")
    if settings.turn_url_list and not settings.turn_secret:
        raise ConfigError("SB_TURN_URLS is set but SB_TURN_SECRET is not")
    return settings


def to_env(settings: Settings) -> dict[str, str]:
    """The SB_* variables that reproduce `settings` in a child process."""
    out: dict[str, str] = {}
    for field, (var, _kind) in _ENV.items():
        out[var] = str(getattr(settings, field))
    return out

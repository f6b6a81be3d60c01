# The bundled NATS's users: sb_admin (password natsToken) and one user per service, allowed only its own
# subjects. The allow lists are charts/switchboard/files/nats-permissions.json, written from
# services/runtime/bususers.py GRANTS (what `switchboard up` uses); the chart's nats-users.yaml and
# _helpers.tpl say the same things, and tests/unit/infra compares the two renderings.

from __future__ import annotations

import base64
import functools
import hashlib
import json
from pathlib import Path
from typing import Any

import bcrypt

from .config import SERVICES, PlatformConfig
from .naming import metadata

__all__ = [
    "PERMISSIONS_FILE",
    "internal_nats_url",
    "nats_password",
    "nats_url_key",
    "service_nats_urls",
    "users_checksum",
    "users_conf",
    "users_secret",
]

PERMISSIONS_FILE = (
    Path(__file__).resolve().parents[2] / "charts" / "switchboard" / "files" / "nats-permissions.json"
)
ADMIN_USER = "sb_admin"
_BCRYPT_ALPHABET = b"./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_STANDARD_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def permissions() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(PERMISSIONS_FILE.read_text())
    return loaded


def nats_password(cfg: PlatformConfig, service: str) -> str:
    """A service's password, derived from natsToken and its name (as the chart's switchboard.natsPassword)."""
    return hashlib.sha256(f"nats-user|{service}|{cfg.nats_token}".encode()).hexdigest()


def internal_nats_url(cfg: PlatformConfig, service: str) -> str:
    return f"nats://{service}:{nats_password(cfg, service)}@{cfg.name}-nats.{cfg.namespace}.svc:4222"


def nats_url_key(cfg: PlatformConfig, service: str) -> str:
    """The Secret's key holding `service`'s NATS URL: its own, unless one natsUrl is given for all."""
    return "SB_NATS_URL" if cfg.nats_url else f"SB_NATS_URL_{service.upper()}"


@functools.cache
def _bcrypt(password: str) -> str:
    """A bcrypt hash (cost 10, $2a$ as Helm's) salted from the password itself: the same on every
    `pulumi up`, so that the users' Secret changes only when a password does (Helm salts at random)."""
    digest = hashlib.sha256(f"salt|{password}".encode()).digest()[:16]
    salt = base64.b64encode(digest).translate(bytes.maketrans(_STANDARD_ALPHABET, _BCRYPT_ALPHABET))[:22]
    return bcrypt.hashpw(password.encode(), b"$2a$10$" + salt).decode()


def users_conf(cfg: PlatformConfig) -> str:
    """nats.conf's included users.conf; $NATS_TOKEN is read from the container's environment."""
    allow = permissions()
    lines = ["authorization {", "  users: [", f"    {{user: {ADMIN_USER}, password: $NATS_TOKEN}}"]
    for service in sorted(SERVICES):
        user = {
            "user": service,
            # The operator's precomputed hash (natsPasswordHashes), else one salted from the password.
            "password": cfg.nats_password_hashes.get(service) or _bcrypt(nats_password(cfg, service)),
            "permissions": {
                direction: {"allow": allow[service][direction]["allow"]}
                for direction in ("publish", "subscribe")
            },
        }
        lines.append(f"    {json.dumps(user)}")
    return "\n".join([*lines, "  ]", "}"]) + "\n"


def users_checksum(cfg: PlatformConfig) -> str:
    """The NATS pods' checksum/users: their inputs (Helm's hashes change on every render)."""
    given = json.dumps(cfg.nats_password_hashes, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{cfg.nats_token}|{PERMISSIONS_FILE.read_text()}|{given}".encode()).hexdigest()


def users_secret(cfg: PlatformConfig) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(cfg, f"{cfg.name}-nats-users", "nats"),
        "type": "Opaque",
        "stringData": {"users.conf": users_conf(cfg)},
    }


def service_nats_urls(cfg: PlatformConfig) -> dict[str, str]:
    """The Secret's entries: each service's URL under its own key (the operator's natsUrls, or the bundled
    NATS's users)."""
    if cfg.nats_url:
        return {"SB_NATS_URL": cfg.nats_url}
    return {
        nats_url_key(cfg, service): cfg.nats_urls[service]
        if cfg.nats_urls
        else internal_nats_url(cfg, service)
        for service in sorted(SERVICES)
    }

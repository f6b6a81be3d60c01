"""TURN credentials (coturn REST scheme) and the ICE servers handed to browsers: pure functions, no network."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from services.api.turn import ice_servers, turn_credentials
from services.kernel.config import ConfigError, load_settings


def _coturn_password(secret: str, username: str) -> str:
    # What coturn computes for `use-auth-secret` (turn_rest_api: base64(HMAC-SHA1(static-auth-secret, user))).
    return base64.b64encode(hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()).decode()


def test_credentials_match_the_coturn_scheme() -> None:
    username, credential, expires = turn_credentials("north", "01a2-agent", now=1_700_000_000.9, ttl=600)
    assert username == "1700000600:01a2-agent" and expires == 1_700_000_600
    assert credential == _coturn_password("north", "1700000600:01a2-agent")
    # Computed independently with `printf 1700000600:01a2-agent | openssl dgst -sha1 -hmac north -binary | base64`.
    assert credential == "Ev9i/Cp4l8G/oZ32mO/LUdtNiFk="
    with pytest.raises(ValueError):
        turn_credentials("", "a", now=0.0)
    with pytest.raises(ValueError):
        turn_credentials("s", "a:b", now=0.0)


def test_ice_servers_from_settings() -> None:
    settings = load_settings(
        {
            "SB_TURN_URLS": "turn:turn.example.com:3478?transport=udp  turns:turn.example.com:5349",
            "SB_TURN_SECRET": "north",
            "SB_TURN_TTL_S": "300",
        }
    )
    servers = ice_servers(settings, "agent-7", 1000.0)
    assert servers == [
        {
            "urls": ["turn:turn.example.com:3478?transport=udp", "turns:turn.example.com:5349"],
            "username": "1300:agent-7",
            "credential": _coturn_password("north", "1300:agent-7"),
        }
    ]
    # Unconfigured (the default): no ICE server at all, never a public STUN server.
    assert load_settings({}).turn_ttl_s == 600
    assert ice_servers(load_settings({}), "agent-7", 1000.0) == []


@pytest.mark.parametrize(
    "env",
    [
        {"SB_TURN_URLS": "stun:relay.example.com", "SB_TURN_SECRET": "x"},
        {"SB_TURN_URLS": "turn:turn.example.com"},
        {"SB_TURN_TTL_S": "5"},
        {"SB_TURN_TTL_S": "ten"},
    ],
)
def test_bad_turn_settings_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        load_settings(env)

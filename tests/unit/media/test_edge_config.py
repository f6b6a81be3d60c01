"""Media settings come from the kernel's Settings (services/kernel/config.py), never from os.environ."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.kernel.config import ConfigError, advertised_host, load_settings, sip_digest_key
from services.media.app import edge_config
from services.media.front.link import WorkerSettings
from services.media.prompts import APOLOGY
from services.media.webrtc import WebRtcConfig
from services.media.webrtc.calls import webrtc_config
from services.runtime.embedded import Secrets


def test_the_unrouted_message_is_configurable() -> None:
    base = {"SB_TOKEN_SECRET": "t"}
    assert edge_config(load_settings(base)).unrouted_message == APOLOGY
    said = edge_config(load_settings({**base, "SB_UNROUTED_MESSAGE": "  Acme is closed today. Goodbye.  "}))
    assert said.unrouted_message == "Acme is closed today. Goodbye."
    blank = edge_config(load_settings({**base, "SB_UNROUTED_MESSAGE": "   "}))  # the default, never silence
    assert blank.unrouted_message == APOLOGY


def test_edge_settings_are_read_from_the_kernel_settings() -> None:
    env = {
        "SB_TOKEN_SECRET": "t",
        "SB_RTP_PORT_MIN": "40000",
        "SB_RTP_PORT_MAX": "40100",
        "SB_MEDIA_MAX_CALLS": "7",
        "SB_MEDIA_MAX_LAG_MS": "0",
        "SB_SIP_REALM": "acme",
        "SB_SIP_MIN_SE": "4",
    }
    config = edge_config(load_settings(env))
    assert (config.rtp_low, config.rtp_high, config.max_calls) == (40000, 40100, 7)
    assert (config.max_lag, config.realm, config.min_se) == (0.0, "acme", 4)


def test_every_worker_signs_digest_nonces_with_one_key() -> None:
    # Two workers of one platform (different ids, same secrets) must accept each other's nonces.
    one = load_settings({"SB_SIP_DIGEST_SECRET": "s", "SB_MEDIA_WORKER_ID": "w1"})
    two = load_settings({"SB_SIP_DIGEST_SECRET": "s", "SB_MEDIA_WORKER_ID": "w2"})
    assert edge_config(one).auth_secret == edge_config(two).auth_secret == sip_digest_key(one)
    assert sip_digest_key(load_settings({"SB_SIP_DIGEST_SECRET": "other"})) != sip_digest_key(one)
    # Without a digest secret it is derived from the token secret (the same in every process).
    derived = load_settings({"SB_TOKEN_SECRET": "t"})
    assert sip_digest_key(derived) == sip_digest_key(load_settings({"SB_TOKEN_SECRET": "t"}))
    with pytest.raises(ConfigError, match="SB_SIP_DIGEST_SECRET"):
        edge_config(load_settings({}))


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"SB_RTP_PORT_MIN": "30000", "SB_RTP_PORT_MAX": "20000"}, "SB_RTP_PORT_MIN"),
        ({"SB_MEDIA_MAX_CALLS": "0"}, "SB_MEDIA_MAX_CALLS"),
        ({"SB_SIP_MIN_SE": "1"}, "SB_SIP_MIN_SE"),
        ({"SB_MEDIA_WEBRTC_CODEC": "speex"}, "SB_MEDIA_WEBRTC_CODEC"),
        ({"SB_MEDIA_WEBRTC_PATH": "gstreamer"}, "SB_MEDIA_WEBRTC_PATH"),
        ({"SB_MEDIA_OPUS_COMPLEXITY": "11"}, "SB_MEDIA_OPUS_COMPLEXITY"),
        ({"SB_MEDIA_OPUS_COMPLEXITY": "-1"}, "SB_MEDIA_OPUS_COMPLEXITY"),
        ({"SB_MEDIA_WORKER_ID": "a b"}, "SB_MEDIA_WORKER_ID"),
        ({"SB_MEDIA_MAX_CPU": "x"}, "SB_MEDIA_MAX_CPU"),
        ({"SB_SIP_REALM": 'a"b'}, "SB_SIP_REALM"),
        ({"SB_MEDIA_ICE_CONSENT_INTERVAL_S": "0"}, "SB_MEDIA_ICE_CONSENT_INTERVAL_S"),
        ({"SB_MEDIA_ICE_CONSENT_FAILURES": "0"}, "SB_MEDIA_ICE_CONSENT_FAILURES"),
        ({"SB_MEDIA_DTLS_CERT_ROTATE_S": "-1"}, "SB_MEDIA_DTLS_CERT_ROTATE_S"),
        ({"SB_MEDIA_DTLS_CERT_ROTATE_S": "700000"}, "SB_MEDIA_DTLS_CERT_ROTATE_S"),  # beyond 7 days
    ],
)
def test_bad_media_settings_are_refused_with_the_variable_named(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_settings(env)


def test_webrtc_and_worker_settings_come_from_settings() -> None:
    settings = load_settings(
        {
            "SB_MEDIA_ICE_HOSTS": "10.0.0.1, 10.0.0.2",
            "SB_MEDIA_ICE_SERVERS": "turn:t.example|u|p",
            "SB_MEDIA_WEBRTC_CODEC": "opus",
            "SB_MEDIA_WORKER_ID": "media-1",
            "SB_SITE": "paris",
            "SB_MEDIA_LINK_PORT": "7001",
            "SB_MEDIA_ICE_CONSENT_INTERVAL_S": "1.5",
            "SB_MEDIA_ICE_CONSENT_FAILURES": "4",
            "SB_MEDIA_DTLS_CERT_ROTATE_S": "3600",
            "SB_MEDIA_OPUS_COMPLEXITY": "7",
        }
    )
    config = webrtc_config(settings)
    assert config.opus_complexity == 7
    assert webrtc_config(load_settings({})).opus_complexity == WebRtcConfig().opus_complexity
    assert (config.consent_interval_s, config.consent_failures) == (1.5, 4)
    assert config.dtls_certificate_lifetime_s == 3600
    defaults = webrtc_config(load_settings({}))
    assert (defaults.consent_interval_s, defaults.consent_failures) == (5.0, 6)  # aioice's own (RFC 7675)
    assert defaults.dtls_certificate_lifetime_s == 86400  # one certificate a day
    assert config.host_addresses == ("10.0.0.1", "10.0.0.2") and config.prefer_opus
    assert config.ice_servers[0].username == "u"
    assert config.own_media, "our RTP/SRTP path is the default"
    assert not webrtc_config(load_settings({"SB_MEDIA_WEBRTC_PATH": "aiortc"})).own_media
    worker = WorkerSettings.from_settings(settings)
    assert worker is not None and (worker.worker_id, worker.site, worker.link_port) == (
        "media-1",
        "paris",
        7001,
    )
    assert WorkerSettings.from_settings(load_settings({})) is None


def test_switchboard_up_keeps_one_digest_secret_in_its_data_dir(tmp_path: Path) -> None:
    made = Secrets.load_or_create(tmp_path)
    assert made.sip_digest_secret and Secrets.load_or_create(tmp_path) == made
    # A data dir from before the digest secret existed gets one, kept from then on.
    old = tmp_path / "old"
    old.mkdir()
    (old / "secrets.json").write_text(
        json.dumps({k: v for k, v in made.__dict__.items() if k != "sip_digest_secret"})
    )
    upgraded = Secrets.load_or_create(old)
    assert upgraded.sip_digest_secret and upgraded.token_secret == made.token_secret
    assert Secrets.load_or_create(old).sip_digest_secret == upgraded.sip_digest_secret
    assert (old / "secrets.json").stat().st_mode & 0o777 == 0o600


def test_an_edge_bound_to_every_interface_never_announces_the_any_address() -> None:
    # The chart binds 0.0.0.0 in every pod: SDP c=, Via and Contact must carry the pod's address instead.
    pod = edge_config(
        load_settings({"SB_TOKEN_SECRET": "t", "SB_BIND_HOST": "0.0.0.0", "SB_ADVERTISE_HOST": "10.4.0.7"})
    )
    assert (pod.host, pod.bind) == ("10.4.0.7", "0.0.0.0")
    local = edge_config(load_settings({"SB_TOKEN_SECRET": "t", "SB_BIND_HOST": "127.0.0.2"}))
    assert (local.host, local.bind) == ("127.0.0.2", "127.0.0.2")


def test_the_advertised_address_falls_back_to_a_non_loopback_address_of_the_machine() -> None:
    every = load_settings({"SB_BIND_HOST": "0.0.0.0"})
    assert advertised_host(every, ("127.0.0.1", "192.168.1.20", "10.0.0.5")) == "192.168.1.20"
    with pytest.raises(ConfigError, match="SB_ADVERTISE_HOST"):
        advertised_host(every, ("127.0.0.1",))
    assert advertised_host(load_settings({"SB_BIND_HOST": "::"}), ("10.0.0.5",)) == "10.0.0.5"
    with pytest.raises(ConfigError, match="any-address"):
        load_settings({"SB_ADVERTISE_HOST": "0.0.0.0"})

"""`switchboard up --public-url` decisions (services/runtime/public.py): the URL, ICE host addresses, the
self-signed certificate, coturn's configuration and the services' environment; and the CLI's refusals."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509

from services.runtime import public
from services.runtime.cli import up
from services.runtime.public import (
    PublicRequest,
    PublicUrlError,
    default_ice_hosts,
    ensure_self_signed,
    parse_public_url,
    public_env,
    resolve,
    turn_config,
)

NOW = dt.datetime(2026, 12, 7, 5, 0, tzinfo=dt.UTC)


def test_public_url_is_https_host_and_port_only() -> None:
    assert parse_public_url("https://sb.example.com") == ("https://sb.example.com", "sb.example.com")
    assert parse_public_url("https://sb.example.com:443/") == ("https://sb.example.com", "sb.example.com")
    assert parse_public_url("https://[2001:db8::1]:8443") == ("https://[2001:db8::1]:8443", "2001:db8::1")
    for bad, word in (
        ("http://sb.example.com", "https://"),
        ("sb.example.com", "https://"),
        ("https://", "no host"),
        ("https://sb.example.com/agent", "only https://HOST"),
        ("https://user@sb.example.com", "only https://HOST"),
        ("https://sb.example.com:99999", "invalid port"),
    ):
        with pytest.raises(PublicUrlError, match=word):
            parse_public_url(bad)


def test_ice_hosts_follow_the_public_address_else_the_machine() -> None:
    assert default_ice_hosts("192.0.2.7", ["192.0.2.7", "10.0.0.2"]) == ("192.0.2.7",)
    # A NAT's public address (port-forwarded): offered first, then the machine's own.
    assert default_ice_hosts("203.0.113.9", ["10.0.0.2"]) == ("203.0.113.9", "10.0.0.2")
    assert default_ice_hosts("sb.example.com", ["10.0.0.2", "2001:db8::2"]) == ("10.0.0.2", "2001:db8::2")
    assert default_ice_hosts("sb.example.com", []) == ("127.0.0.1",)
    assert default_ice_hosts("127.0.0.1", ["10.0.0.2"]) == ("10.0.0.2",)


def test_machine_addresses_leave_out_loopback_and_link_local() -> None:
    for address in public.machine_addresses():
        ip = ipaddress.ip_address(address)
        assert not ip.is_loopback and not ip.is_link_local


def test_self_signed_certificate_names_the_host_and_is_reused_until_near_expiry(tmp_path: Path) -> None:
    cert, key, made = ensure_self_signed(tmp_path, "192.0.2.7", NOW)
    assert made and key.stat().st_mode & 0o777 == 0o600
    parsed = x509.load_pem_x509_certificate(cert.read_bytes())
    sans = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("192.0.2.7")]
    assert parsed.not_valid_after_utc - NOW == dt.timedelta(days=public.SELF_SIGNED_DAYS)
    # The key and the certificate belong together (what a TLS server loads).
    ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    again = cert.read_bytes()
    assert ensure_self_signed(tmp_path, "192.0.2.7", NOW + dt.timedelta(days=30))[2] is False
    assert cert.read_bytes() == again
    # Another host, or a week from expiry: a new one.
    assert ensure_self_signed(tmp_path, "sb.example.com", NOW)[2] is True
    names = x509.load_pem_x509_certificate(cert.read_bytes()).extensions
    assert names.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName
    ) == ["sb.example.com"]
    assert ensure_self_signed(tmp_path, "sb.example.com", NOW + dt.timedelta(days=84))[2] is True
    cert.write_text("garbage")
    assert ensure_self_signed(tmp_path, "sb.example.com", NOW)[2] is True


def test_resolve_refuses_what_cannot_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = "https://192.0.2.7"
    with pytest.raises(PublicUrlError, match="together"):
        resolve(PublicRequest(url, tls_cert=tmp_path / "c.pem"), tmp_path, NOW, [])
    with pytest.raises(PublicUrlError, match="no such file"):
        resolve(PublicRequest(url, tls_cert=tmp_path / "c", tls_key=tmp_path / "k"), tmp_path, NOW, [])
    (tmp_path / "c").write_text("x")
    (tmp_path / "k").write_text("x")
    with pytest.raises(PublicUrlError, match="proxy holds the certificate"):
        resolve(
            PublicRequest(url, tls_cert=tmp_path / "c", tls_key=tmp_path / "k", behind_proxy=True),
            tmp_path,
            NOW,
            [],
        )
    with pytest.raises(PublicUrlError, match="not an IP address"):
        resolve(PublicRequest(url, ice_hosts=("media.example.com",)), tmp_path, NOW, [])
    monkeypatch.setattr(public, "turn_binary", lambda: None)
    with pytest.raises(PublicUrlError, match="apt-get install coturn"):
        resolve(PublicRequest(url, turn=True), tmp_path, NOW, [])


def test_resolve_modes_and_the_services_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SB_TRUSTED_PROXIES", raising=False)
    monkeypatch.setattr(public, "turn_binary", lambda: "/usr/bin/turnserver")
    access = resolve(PublicRequest("https://sb.example.com:8443", turn=True), tmp_path, NOW, ["192.0.2.7"])
    assert access.tls == "self-signed" and access.cert == tmp_path / "tls" / "self-signed.crt"
    assert access.ice_hosts == ("192.0.2.7",) and access.turn_port == 3478
    assert (tmp_path / "turn" / "secret").stat().st_mode & 0o777 == 0o600
    env = public_env(access)
    assert env["SB_PUBLIC_URL"] == "https://sb.example.com:8443"
    assert env["SB_MEDIA_ICE_HOSTS"] == "192.0.2.7"
    assert env["SB_TLS_CERT_FILE"].endswith("self-signed.crt")
    # Browsers reach TURN by the public name; the secret is the one kept in the data dir.
    assert (
        env["SB_TURN_URLS"] == "turn:sb.example.com:3478?transport=udp turn:sb.example.com:3478?transport=tcp"
    )
    assert env["SB_TURN_SECRET"] == (tmp_path / "turn" / "secret").read_text().strip()
    assert resolve(PublicRequest("https://sb.example.com", turn=True), tmp_path, NOW, []).turn_secret == (
        access.turn_secret
    )
    conf = turn_config(access, tmp_path)
    assert "use-auth-secret" in conf and f"static-auth-secret={access.turn_secret}" in conf
    assert "listening-ip=192.0.2.7" in conf and "allowed-peer-ip=192.0.2.7" in conf
    assert (
        "denied-peer-ip=10.0.0.0-10.255.255.255" in conf
        and "denied-peer-ip=127.0.0.0-127.255.255.255" in conf
    )
    assert "user=" not in conf  # REST credentials only
    proxied = resolve(
        PublicRequest("https://sb.example.com", behind_proxy=True), tmp_path, NOW, ["192.0.2.7"]
    )
    env = public_env(proxied)
    assert proxied.tls == "proxy" and "SB_TLS_CERT_FILE" not in env and "SB_TURN_URLS" not in env
    assert env["SB_TRUSTED_PROXIES"] == "127.0.0.1,::1"


def test_cli_refuses_public_flags_without_a_public_url_and_a_bad_url(tmp_path: Path) -> None:
    runner = CliRunner()
    done = runner.invoke(up, ["--data-dir", str(tmp_path), "--turn"])
    assert done.exit_code == 2 and "--turn need --public-url" in done.output
    done = runner.invoke(up, ["--data-dir", str(tmp_path), "--tls-cert", "x.pem", "--tls-key", "y.pem"])
    assert done.exit_code == 2 and "--tls-cert, --tls-key need --public-url" in done.output


def test_up_stops_before_starting_anything_on_a_bad_public_url(tmp_path: Path) -> None:
    done = CliRunner().invoke(up, ["--data-dir", str(tmp_path), "--public-url", "http://192.0.2.7"])
    assert done.exit_code == 1
    assert "must start with https://" in done.output
    assert not (tmp_path / "pg").exists()  # refused before PostgreSQL

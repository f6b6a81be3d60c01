"""`switchboard up --public-url https://HOST`: agents on other machines (at home, across the internet).

Browsers give a page the microphone only on a secure origin, so the agent desktop must be served over HTTPS
(and its websocket over WSS) at the address agents type; the media service must offer ICE candidates on an
address they can reach; and agents behind NAT need a TURN relay. This module decides all of that from the
flags (pure functions: addresses and the time are passed in) and makes the files it needs: a self-signed
certificate for a LAN trial, and coturn's configuration with the TURN REST shared secret (coturn's
`use-auth-secret`, the scheme services/api/turn.py issues short-lived credentials in).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import psutil

__all__ = [
    "TURN_BINARY",
    "PublicAccess",
    "PublicRequest",
    "PublicUrlError",
    "default_ice_hosts",
    "ensure_self_signed",
    "ensure_turn_secret",
    "machine_addresses",
    "parse_public_url",
    "public_env",
    "resolve",
    "trust_steps",
    "turn_binary",
    "turn_config",
    "turn_urls",
]

TURN_BINARY = "turnserver"  # coturn (Debian package `coturn`)
SELF_SIGNED_DAYS = 90
RENEW_BEFORE = dt.timedelta(days=7)
# The relay ports coturn hands out: small, so a firewall rule for them is one line.
TURN_RELAY_PORTS = (49160, 49359)


class PublicUrlError(ValueError):
    """A flag combination that cannot work; the message says which flag to change."""


@dataclass(frozen=True)
class PublicAccess:
    """What `--public-url` and its companions decided (docs/runtime.md, "Agents at home")."""

    url: str  # https://HOST[:PORT], without a trailing slash
    host: str  # as typed: a name or an IP address (brackets removed)
    tls: str  # "files" (--tls-cert/--tls-key), "self-signed" (made here), "proxy" (a reverse proxy has it)
    cert: Path | None
    key: Path | None
    ice_hosts: tuple[str, ...]
    turn_port: int | None = None  # coturn runs on the ICE hosts at this port
    turn_secret: str = ""


@dataclass(frozen=True)
class PublicRequest:
    """The flags as given (services/runtime/cli.py); `resolve` turns them into a PublicAccess."""

    url: str
    tls_cert: Path | None = None
    tls_key: Path | None = None
    behind_proxy: bool = False
    ice_hosts: tuple[str, ...] = ()
    turn: bool = False
    turn_port: int = 3478


def resolve(request: PublicRequest, data_dir: Path, now: dt.datetime, addresses: list[str]) -> PublicAccess:
    """Check the flags together and make what they need (a certificate, the TURN secret)."""
    url, host = parse_public_url(request.url)
    if (request.tls_cert is None) != (request.tls_key is None):
        raise PublicUrlError("give --tls-cert and --tls-key together (the certificate and its private key)")
    if request.behind_proxy and request.tls_cert is not None:
        raise PublicUrlError("--behind-proxy: the proxy holds the certificate; drop --tls-cert/--tls-key")
    for flag, path in (("--tls-cert", request.tls_cert), ("--tls-key", request.tls_key)):
        if path is not None and not path.is_file():
            raise PublicUrlError(f"{flag} {path}: no such file")
    for h in request.ice_hosts:
        ip = _ip(h)
        if ip is None or ip.is_unspecified:
            raise PublicUrlError(f"--ice-hosts: {h!r} is not an IP address of this machine")
    ice_hosts = request.ice_hosts or default_ice_hosts(host, addresses)
    cert, key, tls = request.tls_cert, request.tls_key, "files"
    if request.behind_proxy:
        tls = "proxy"
    elif cert is None:
        cert, key, _ = ensure_self_signed(data_dir / "tls", host, now)
        tls = "self-signed"
    turn_port = None
    turn_secret = ""
    if request.turn:
        if turn_binary() is None:
            raise PublicUrlError(
                "--turn needs coturn's turnserver: `apt-get install coturn` (Debian), or run your own TURN "
                "server and set SB_TURN_URLS and SB_TURN_SECRET"
            )
        turn_port = request.turn_port
        turn_secret = ensure_turn_secret(data_dir)
    return PublicAccess(url, host, tls, cert, key, tuple(ice_hosts), turn_port, turn_secret)


def parse_public_url(url: str) -> tuple[str, str]:
    """(normalised URL, host) of an `https://HOST[:PORT]` URL, or PublicUrlError saying what is wrong."""
    parts = urlsplit(url.strip())
    if parts.scheme != "https":
        raise PublicUrlError(
            f"--public-url {url!r} must start with https:// (browsers give the microphone only to secure pages)"
        )
    if not parts.hostname:
        raise PublicUrlError(f"--public-url {url!r} names no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise PublicUrlError(f"--public-url {url!r}: give only https://HOST or https://HOST:PORT")
    try:
        port = parts.port
    except ValueError:
        raise PublicUrlError(f"--public-url {url!r} has an invalid port") from None
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host
    return f"https://{shown}" + (f":{port}" if port and port != 443 else ""), host


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def machine_addresses() -> list[str]:
    """This machine's interface addresses that another machine could reach: IPv4 and global IPv6, without
    loopback and link-local ones, in interface order."""
    out: list[str] = []
    for addrs in psutil.net_if_addrs().values():
        for addr in addrs:
            ip = _ip(addr.address.split("%")[0])
            if ip is None or ip.is_loopback or ip.is_link_local or ip.is_unspecified:
                continue
            if ip.version == 6 and not ip.is_global and not ip.is_private:
                continue
            if str(ip) not in out:
                out.append(str(ip))
    return out


def default_ice_hosts(public_host: str, addresses: list[str]) -> tuple[str, ...]:
    """Where media offers ICE host candidates when --ice-hosts is not given: the public URL's host when it
    is an address of this machine (it is where agents reach us), else every non-loopback address (a name
    usually resolves to one of them, or to a router that forwards to one: TURN covers the rest); the
    public host itself when it is an address not on an interface (a NAT's public address, port-forwarded)."""
    ip = _ip(public_host)
    if ip is not None and not ip.is_loopback:
        return (str(ip),) if str(ip) in addresses or not addresses else (str(ip), *addresses)
    if addresses:
        return tuple(addresses)
    return ("127.0.0.1",)


def ensure_self_signed(folder: Path, host: str, now: dt.datetime) -> tuple[Path, Path, bool]:
    """(cert, key, made now) for `host`: the one in `folder` while it names the host and has more than a
    week left, else a new EC P-256 key and a certificate valid SELF_SIGNED_DAYS days (the key file 0600)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / "self-signed.crt", folder / "self-signed.key"
    ip = _ip(host)
    names: list[x509.GeneralName] = [x509.IPAddress(ip) if ip else x509.DNSName(host)]
    if cert_path.exists() and key_path.exists():
        try:
            old = x509.load_pem_x509_certificate(cert_path.read_bytes())
            sans = old.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            if names[0] in sans and old.not_valid_after_utc - now > RENEW_BEFORE:
                return cert_path, key_path, False
        except (ValueError, x509.ExtensionNotFound):
            pass  # unreadable or foreign: replaced below
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host[:64])])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=SELF_SIGNED_DAYS))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        # A CA that can only sign itself: browsers accept it as a trust anchor once imported.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    pem_key = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem_key)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path, True


def trust_steps(cert: Path, url: str) -> list[str]:
    """What an agent does once so that the browser trusts a self-signed certificate (docs/runtime.md)."""
    return [
        f"Self-signed certificate: {cert} (for a trial on your network; use --tls-cert/--tls-key or a",
        "reverse proxy with a real certificate for agents on the internet). On each agent's computer, once:",
        f"  copy {cert.name} there, then",
        "  Linux (Chrome/Chromium): certutil -d sql:$HOME/.pki/nssdb -A -t 'C,,' -n switchboard -i "
        + cert.name,
        "  macOS: sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain "
        + cert.name,
        f"  Windows: certutil -addstore -f Root {cert.name}   (Firefox: Settings, Certificates, Import)",
        f"  then open {url}/agent/ : the address bar shows a lock and the page may use the microphone.",
        f"  The switchboard CLI trusts it with: export SSL_CERT_FILE={cert}",
    ]


def ensure_turn_secret(data_dir: Path) -> str:
    """The TURN REST shared secret in DATA_DIR/turn/secret (0600), made on first use."""
    folder = data_dir / "turn"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "secret"
    if path.exists():
        value = path.read_text().strip()
        if len(value) >= 32:
            return value
    value = secrets.token_hex(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return value


def turn_urls(host: str, port: int) -> str:
    """SB_TURN_URLS for browsers: UDP first, TCP for networks that block UDP."""
    shown = f"[{host}]" if ":" in host else host
    return f"turn:{shown}:{port}?transport=udp turn:{shown}:{port}?transport=tcp"


def turn_config(access: PublicAccess, data_dir: Path) -> str:
    """coturn's configuration: REST credentials only (no static users), listening and relaying on the ICE
    hosts, and no relaying to private or loopback addresses except the ICE hosts themselves (a TURN server
    is otherwise a way into the machine's networks)."""
    assert access.turn_port is not None
    realm = access.host
    low, high = TURN_RELAY_PORTS
    lines = [
        "# Written by `switchboard up --turn`; rewritten on every start.",
        f"listening-port={access.turn_port}",
        *(f"listening-ip={h}" for h in access.ice_hosts),
        *(f"relay-ip={h}" for h in access.ice_hosts),
        f"min-port={low}",
        f"max-port={high}",
        "use-auth-secret",
        f"static-auth-secret={access.turn_secret}",
        f"realm={realm}",
        "fingerprint",
        "no-cli",
        "no-tls",
        "no-dtls",
        "no-multicast-peers",
        "no-software-attribute",
        "stale-nonce=600",
        f"pidfile={data_dir / 'turn' / 'turnserver.pid'}",
        f"userdb={data_dir / 'turn' / 'turndb'}",  # not the system's /var/lib/turn
        "log-file=stdout",
        "simple-log",
        *(
            f"denied-peer-ip={net}"
            for net in (
                "0.0.0.0-0.255.255.255",
                "10.0.0.0-10.255.255.255",
                "100.64.0.0-100.127.255.255",
                "127.0.0.0-127.255.255.255",
                "169.254.0.0-169.254.255.255",
                "172.16.0.0-172.31.255.255",
                "192.168.0.0-192.168.255.255",
                "::1",
                "fc00::-fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
                "fe80::-febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            )
        ),
        # The media service's own addresses stay reachable through the relay, private or not.
        *(f"allowed-peer-ip={h}" for h in access.ice_hosts),
    ]
    return "\n".join(lines) + "\n"


def public_env(access: PublicAccess) -> dict[str, str]:
    """The SB_* variables the services get: TLS files for the API, ICE hosts for media, TURN for both."""
    env = {"SB_PUBLIC_URL": access.url, "SB_MEDIA_ICE_HOSTS": ",".join(access.ice_hosts)}
    if access.cert is not None and access.key is not None:
        env["SB_TLS_CERT_FILE"] = str(access.cert)
        env["SB_TLS_KEY_FILE"] = str(access.key)
    if access.tls == "proxy" and not os.environ.get("SB_TRUSTED_PROXIES"):
        # The reverse proxy on this machine: its X-Forwarded-For names the agent (docs/runtime.md).
        env["SB_TRUSTED_PROXIES"] = "127.0.0.1,::1"
    if access.turn_port is not None:
        # Browsers reach the relay where they reach the page: the public URL's host.
        env["SB_TURN_URLS"] = turn_urls(access.host, access.turn_port)
        env["SB_TURN_SECRET"] = access.turn_secret
    return env


def turn_binary() -> str | None:
    return shutil.which(TURN_BINARY)

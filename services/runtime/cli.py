"""The `switchboard up` command (click); the CLI adds it to the `switchboard` group."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from .public import PublicRequest
from .runtime import DEFAULT_HTTP_PORT, PARTITIONED, SERVICES, Options, run

__all__ = ["up"]


def _parse_services(_ctx: click.Context, _param: click.Parameter, value: str | None) -> tuple[str, ...]:
    if value is None:
        return SERVICES
    wanted = {v.strip() for v in value.split(",") if v.strip()}
    unknown = sorted(wanted - set(SERVICES))
    if unknown:
        raise click.BadParameter(
            f"unknown service(s) {', '.join(unknown)}; choose from {', '.join(SERVICES)}"
        )
    if not wanted:
        raise click.BadParameter("name at least one service")
    return tuple(s for s in SERVICES if s in wanted)


def _parse_media_workers(_ctx: click.Context, _param: click.Parameter, value: str) -> int:
    if value.strip().lower() == "auto":
        return os.cpu_count() or 1
    try:
        count = int(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is neither a number nor 'auto'") from None
    if not 1 <= count <= 64:
        raise click.BadParameter("choose 1 to 64 workers")
    return count


def _parse_workers(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> tuple[tuple[str, int], ...]:
    """ "contacts=2,ivr=2,routing=2" -> (("contacts", 2), ...)."""
    if not value:
        return ()
    found: dict[str, int] = {}
    for part in value.split(","):
        name, sep, count = part.strip().partition("=")
        if not sep or name not in PARTITIONED:
            raise click.BadParameter(
                f"{part.strip()!r}: write NAME=N with NAME one of {', '.join(PARTITIONED)} (e.g. contacts=2)"
            )
        try:
            n = int(count)
        except ValueError:
            raise click.BadParameter(f"{part.strip()!r}: N must be a whole number") from None
        if not 1 <= n <= 16:
            raise click.BadParameter(f"{part.strip()!r}: choose 1 to 16 workers (one per partition at most)")
        found[name] = n
    return tuple(found.items())


@click.command("up")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".switchboard"),
    show_default=True,
    help="Where PostgreSQL, NATS, secrets and the demo key live; reused by the next run.",
)
@click.option(
    "--http-port",
    type=click.IntRange(1, 65535),
    default=DEFAULT_HTTP_PORT,
    show_default=True,
    help="The API, web apps and /healthz.",
)
@click.option(
    "--sip-port",
    type=click.IntRange(1, 65535),
    default=5060,
    show_default=True,
    help="The SIP edge (media), UDP and TCP.",
)
@click.option(
    "--demo", is_flag=True, help="Create (idempotently) a demo tenant with agents, a queue and a number."
)
@click.option(
    "--media-workers",
    callback=_parse_media_workers,
    default="auto",
    show_default=True,
    metavar="N|auto",
    help="Media worker processes; more than 1 puts a SIP front on the SIP port that shares calls among "
    "them (auto: one per core).",
)
@click.option(
    "--api-workers",
    type=click.IntRange(1, 64),
    default=2,
    show_default=True,
    help="API processes sharing the HTTP port; agents whose process dies reconnect to another within "
    "seconds and keep their calls.",
)
@click.option(
    "--workers",
    callback=_parse_workers,
    metavar="NAME=N,...",
    help="Processes sharing the tenants by partition, for contacts, ivr and routing (e.g. "
    "contacts=2,ivr=2,routing=2); a killed one's tenants move to the others within 5 s. Default: one each.",
)
@click.option(
    "--services",
    "services",
    callback=_parse_services,
    metavar="a,b",
    help=f"Start only these services (default: all of {','.join(SERVICES)}).",
)
@click.option(
    "--bind",
    "bind_host",
    metavar="ADDRESS",
    help="The address the API and the SIP edge listen on (default: SB_BIND_HOST, else 127.0.0.1). "
    "Agents on other machines need this machine's address (or a reverse proxy).",
)
@click.option(
    "--public-url",
    metavar="https://HOST[:PORT]",
    help="The address agents on other machines open: serve HTTPS and WSS for it (a self-signed "
    "certificate unless --tls-cert/--tls-key or --behind-proxy) and offer ICE addresses for it.",
)
@click.option(
    "--tls-cert",
    type=click.Path(dir_okay=False, path_type=Path),
    help="PEM certificate (chain) for --public-url's host.",
)
@click.option("--tls-key", type=click.Path(dir_okay=False, path_type=Path), help="Its PEM private key.")
@click.option(
    "--behind-proxy",
    is_flag=True,
    help="A reverse proxy on this machine terminates TLS for --public-url: serve plain HTTP to it and "
    "trust its X-Forwarded-For.",
)
@click.option(
    "--ice-hosts",
    metavar="IP,IP",
    help="Addresses media offers as ICE host candidates (default: --public-url's host if it is an "
    "address, else this machine's non-loopback addresses).",
)
@click.option(
    "--turn",
    is_flag=True,
    help="Run a TURN relay (coturn's turnserver, Debian package coturn) for agents behind NAT, with "
    "short-lived credentials from a shared secret.",
)
@click.option(
    "--turn-port", type=click.IntRange(1, 65535), default=3478, show_default=True, help="The TURN port."
)
def up(
    data_dir: Path,
    http_port: int,
    sip_port: int,
    demo: bool,
    media_workers: int,
    api_workers: int,
    workers: tuple[tuple[str, int], ...],
    services: tuple[str, ...],
    bind_host: str | None,
    public_url: str | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    behind_proxy: bool,
    ice_hosts: str | None,
    turn: bool,
    turn_port: int,
) -> None:
    """Run the whole platform on this machine: embedded PostgreSQL and NATS, and every service.

    SB_DATABASE_URL / SB_NATS_URL use existing servers instead (with SB_DATABASE_ADMIN_URL the database is
    also bootstrapped and migrated). Ctrl-C stops everything. For agents on other machines see
    --public-url (docs/runtime.md, "Agents at home").
    """
    public = None
    if public_url is not None:
        public = PublicRequest(
            url=public_url,
            tls_cert=tls_cert.expanduser().resolve() if tls_cert else None,
            tls_key=tls_key.expanduser().resolve() if tls_key else None,
            behind_proxy=behind_proxy,
            ice_hosts=tuple(h.strip() for h in (ice_hosts or "").split(",") if h.strip()),
            turn=turn,
            turn_port=turn_port,
        )
    else:
        given = [
            flag
            for flag, value in (
                ("--tls-cert", tls_cert),
                ("--tls-key", tls_key),
                ("--behind-proxy", behind_proxy),
                ("--ice-hosts", ice_hosts),
                ("--turn", turn),
            )
            if value
        ]
        if given:
            raise click.UsageError(f"{', '.join(given)} need --public-url https://HOST")
    opts = Options(
        data_dir=data_dir.expanduser().resolve(),
        http_port=http_port,
        sip_port=sip_port,
        demo=demo,
        services=services,
        bind_host=bind_host or os.environ.get("SB_BIND_HOST") or "127.0.0.1",
        media_workers=media_workers,
        api_workers=api_workers,
        workers=workers,
        public=public,
    )
    if http_port == sip_port and "api" in services and "media" in services:
        raise click.UsageError("--http-port and --sip-port must differ")
    sys.exit(run(opts))

"""`switchboard trunks`: the SIP trunks a tenant's carriers call in through, and `originate` calls out through.

A password is write-only (the API stores only the digest HA1). It can be given as --password, in
SB_TRUNK_PASSWORD, or typed at a hidden prompt with `--password -`, so it need not sit in shell history.
"""

from __future__ import annotations

import ipaddress
import os

import click
import switchboard

from . import output
from .context import CliError, State, command, emit_json, group
from .parsing import is_uuid

__all__ = ["parse_outbound", "register"]

PAGE = 200
PASSWORD_ENV = "SB_TRUNK_PASSWORD"


def parse_outbound(text: str) -> tuple[str, int | None]:
    """HOST, HOST:PORT, [IPv6]:PORT or a bare IPv6 address -> (host, port or None)."""
    text = text.strip()
    if not text:
        raise click.BadParameter("--outbound needs a host, e.g. sip.carrier.example:5060")
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise click.BadParameter(f"{text!r}: write an IPv6 address with a port as [2001:db8::1]:5060")
        port_text = rest[1:] if rest else ""
    elif text.count(":") > 1:
        try:
            return str(ipaddress.IPv6Address(text)), None
        except ValueError:
            raise click.BadParameter(f"{text!r} is not a host, HOST:PORT or IPv6 address") from None
    else:
        host, _, port_text = text.partition(":")
    if not host:
        raise click.BadParameter(f"{text!r} has no host")
    if not port_text:
        return host, None
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise click.BadParameter(f"{text!r}: the port must be a number from 1 to 65535")
    return host, int(port_text)


def _password(username: str | None, given: str | None) -> str | None:
    if given is not None and username is None:
        raise click.UsageError("--password needs --username")
    if given == "-":
        from_env = os.environ.get(PASSWORD_ENV)
        if from_env:
            return from_env
        return str(click.prompt("Trunk password", hide_input=True, confirmation_prompt=True))
    if given is not None:
        return given
    if username is not None:
        from_env = os.environ.get(PASSWORD_ENV)
        if not from_env:
            raise click.UsageError(
                f"--username needs --password (or {PASSWORD_ENV}, or --password - to type it)"
            )
        return from_env
    return None


def find_trunk(client: switchboard.Client, ref: str) -> switchboard.Trunk:
    if is_uuid(ref):
        return client.trunks.get(ref)
    wanted = ref.strip().casefold()
    trunks = list(client.trunks.iter(page_size=PAGE))
    for trunk in trunks:
        if trunk.name.casefold() == wanted:
            return trunk
    known = ", ".join(t.name for t in trunks) or "none"
    raise CliError(f"no trunk named {ref!r} (trunks: {known})")


def _outbound(trunk: switchboard.Trunk) -> str:
    if not trunk.outbound_host:
        return ""
    host = f"[{trunk.outbound_host}]" if ":" in trunk.outbound_host else trunk.outbound_host
    return f"{host}:{trunk.outbound_port or 5060}/{trunk.outbound_transport}"


LOOPBACK = (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))


def local_calls_accepted(trunks: list[switchboard.Trunk]) -> bool:
    """Whether a call from this machine (loopback) gets in without credentials: a tenant with no trunk
    takes calls from anywhere; with trunks, only from their allowed addresses (the edge's rule)."""
    if not trunks:
        return True
    for trunk in trunks:
        for allowed in trunk.allowed_ips:
            try:
                network = ipaddress.ip_network(allowed, strict=False)
            except ValueError:
                continue
            if any(address in network for address in LOOPBACK if address.version == network.version):
                return True
    return False


def _warn_local_calls(before: list[switchboard.Trunk], after: list[switchboard.Trunk]) -> None:
    """On stderr (stdout stays the --json document): a trunk change that decides whether calls placed on
    this machine (SIPp, a softphone on 127.0.0.1) are still let in."""
    was, now = local_calls_accepted(before), local_calls_accepted(after)
    if was and not now:
        click.echo(
            "warning: with this trunk, calls in are accepted only from the trunks' allowed addresses or with "
            "their digest credentials: calls placed from this machine (127.0.0.1) now get 401/403. Keep them "
            "with a trunk that has --allow-ip 127.0.0.1, or remove the trunk when done.",
            err=True,
        )
    elif now and not was:
        click.echo(
            "note: calls placed from this machine (127.0.0.1) are accepted again"
            + (" (no trunks left: calls in are accepted from any address)." if not after else "."),
            err=True,
        )


def register(cli: click.Group) -> None:
    trunks = group(
        cli, "trunks", "SIP trunks: who may send calls in (IP allowlist, digest) and where calls go out."
    )

    @command(trunks, "add")
    @click.argument("name")
    @click.option(
        "--allow-ip",
        "allow_ips",
        multiple=True,
        metavar="IP/CIDR",
        help="Source address or network allowed to call in (repeat for more).",
    )
    @click.option("--username", help="Digest user name the carrier authenticates with.")
    @click.option(
        "--password",
        metavar="PASSWORD",
        help=f"Digest password ('-': read {PASSWORD_ENV} or ask, hidden). Never shown again.",
    )
    @click.option("--realm", help="Digest realm (default: switchboard).")
    @click.option(
        "--outbound", metavar="HOST[:PORT]", help="Where `originate` sends calls through this trunk."
    )
    @click.option("--transport", type=click.Choice(["udp", "tcp"]), help="Outbound transport (default udp).")
    def trunks_add(
        state: State,
        name: str,
        allow_ips: tuple[str, ...],
        username: str | None,
        password: str | None,
        realm: str | None,
        outbound: str | None,
        transport: str | None,
    ) -> None:
        """Add a SIP trunk (it needs --allow-ip, --username/--password, or --outbound)."""
        secret = _password(username, password)
        host, port = parse_outbound(outbound) if outbound is not None else (None, None)
        if transport is not None and host is None:
            raise click.UsageError("--transport needs --outbound")
        unset = switchboard.UNSET
        with state.client() as client:
            before = list(client.trunks.iter(page_size=PAGE))
            trunk = client.trunks.create(
                name,
                allowed_ips=list(allow_ips) if allow_ips else unset,
                username=username if username is not None else unset,
                password=secret if secret is not None else unset,
                realm=realm if realm is not None else unset,
                outbound_host=host if host is not None else unset,
                outbound_port=port if port is not None else unset,
                outbound_transport=transport if transport is not None else unset,
            )
            _warn_local_calls(before, [*before, trunk])
        if state.json:
            emit_json(trunk)
            return
        how = [
            f"from {', '.join(trunk.allowed_ips)}" if trunk.allowed_ips else "",
            f"digest user {trunk.username} (realm {trunk.realm})" if trunk.has_credentials else "",
            f"outbound {_outbound(trunk)}" if trunk.outbound_host else "",
        ]
        output.note(f"Added trunk {trunk.name}: {'; '.join(h for h in how if h)}. Id {trunk.id}.")

    @command(trunks, "list")
    def trunks_list(state: State) -> None:
        """List SIP trunks."""
        with state.client() as client:
            found = list(client.trunks.iter(page_size=PAGE))
        if state.json:
            emit_json(found)
            return
        output.table(
            ("ID", "NAME", "ALLOWED IPS", "DIGEST USER", "OUTBOUND"),
            (
                [t.id, t.name, ",".join(t.allowed_ips), t.username if t.has_credentials else "", _outbound(t)]
                for t in found
            ),
        )

    @command(trunks, "remove")
    @click.argument("trunk", metavar="NAME_OR_ID")
    def trunks_remove(state: State, trunk: str) -> None:
        """Remove a SIP trunk."""
        with state.client() as client:
            found = find_trunk(client, trunk)
            before = list(client.trunks.iter(page_size=PAGE))
            client.trunks.delete(found.id)
            _warn_local_calls(before, [t for t in before if t.id != found.id])
        if state.json:
            emit_json(found)
            return
        output.note(f"Removed trunk {found.name} ({found.id}).")

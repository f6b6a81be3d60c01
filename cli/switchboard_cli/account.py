"""Account commands: signup, login, whoami, seats, usage, keys and the audit log."""

from __future__ import annotations

import sys
from datetime import datetime

import click
import switchboard

from . import output
from .context import EXIT_USAGE, CliError, State, command, emit_json, group
from .parsing import TIMESTAMP
from .profiles import Profile, ProfileError, load_profiles, save_profile

__all__ = ["register"]

ROLES = ("admin", "supervisor", "developer")
SEAT_COUNT = click.IntRange(1, 1000)


def _save(state: State, profile: Profile) -> str:
    name = state.profile_name
    api_key = profile.api_key
    try:
        previous = load_profiles().get(name)
        path = save_profile(name, profile)
    except ProfileError as exc:
        raise CliError(str(exc)) from None
    if previous and previous.api_key and previous.api_key != api_key:
        # stderr: --json keeps stdout for the document alone.
        click.echo(
            f"note: profile '{name}' held another key ({previous.api_key[:12]}...); it was replaced",
            err=True,
        )
    return str(path)


def _check_signup(state: State, company: str, email: str, force: bool, yes: bool) -> None:
    """Before a tenant is made: never drop another tenant's key, and ask before a duplicate tenant."""
    name = state.profile_name
    try:
        profiles = load_profiles()
    except ProfileError as exc:
        raise CliError(str(exc)) from None
    held = profiles.get(name)
    if held is not None and held.api_key and not force:
        whose = f"{held.company}'s" if held.company else "another"
        raise CliError(
            f"profile '{name}' already holds {whose} key ({held.api_key[:12]}...); sign up into a new "
            "profile with --profile NAME, or replace that key with --force",
            EXIT_USAGE,
        )
    same = [
        (n, p)
        for n, p in sorted(profiles.items())
        if (p.company or "").casefold() == company.casefold()
        and (p.email or "").casefold() == email.casefold()
    ]
    if not same or yes:
        return
    where = ", ".join(f"'{n}' (tenant {p.tenant_id})" for n, p in same)
    question = f"{company} <{email}> already signed up from here (profile {where}). Create another tenant?"
    if not sys.stdin.isatty():
        raise CliError(
            f"{question.removesuffix(' Create another tenant?')}; pass --yes to create another tenant"
        )
    if not click.confirm(question, default=False, err=True):
        raise CliError("signup cancelled: no tenant was created")


def _duration(seconds: float) -> str:
    """`2d 3h 05m`, `3h 05m`, `12m 30s`: how long an interval of usage lasted."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours}h {minutes:02d}m"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s"


def _seats_rows(seats: switchboard.Seats) -> list[tuple[str, object]]:
    return [
        ("purchased", seats.purchased),
        ("logged in", seats.logged_in),
        ("available", seats.available),
        ("plan", seats.plan),
    ]


def _key_row(key: switchboard.Key) -> list[object]:
    return [
        key.id,
        key.name,
        key.role,
        key.prefix,
        output.short_time(key.created_at),
        output.short_time(key.last_used_at),
        output.short_time(key.revoked_at) if key.revoked_at else "",
    ]


KEY_COLUMNS = ("ID", "NAME", "ROLE", "PREFIX", "CREATED", "LAST USED", "REVOKED")


def register(cli: click.Group) -> None:
    @command(cli, "signup")
    @click.option("--company", required=True, metavar="NAME", help="Your company's name.")
    @click.option("--email", required=True, metavar="EMAIL", help="The admin's email address.")
    @click.option(
        "--api-url", metavar="URL", help="API to sign up with (default: profile, $SB_API_URL, local)."
    )
    @click.option("--force", is_flag=True, help="Replace the key the profile already holds.")
    @click.option(
        "--yes", is_flag=True, help="Create the tenant even if this company and email signed up before."
    )
    def signup(state: State, company: str, email: str, api_url: str | None, force: bool, yes: bool) -> None:
        """Create a tenant and keep its admin API key in the profile.

        Refused when the profile already holds a key (use --profile NAME for another tenant, or --force);
        asks before signing up a company and email that already signed up from this machine (--yes).
        """
        _check_signup(state, company, email, force, yes)
        url = state.api_url(api_url)
        with state.client(api_key="", api_url=url) as client:
            result = client.signup(company, email)
        saved = Profile(url, result.api_key.key, result.tenant.id, result.tenant.name, email)
        path = _save(state, saved)
        if state.json:
            emit_json(result)
            return
        output.note(f"Signed up {result.tenant.name} (tenant {result.tenant.id}).")
        output.note(f"Admin API key, shown once and saved to profile '{state.profile_name}' in {path}:")
        output.note(f"  {result.api_key.key}")
        output.note(
            f"Plan {result.seats.plan} with {result.seats.purchased} seats. Next: switchboard seats buy N"
        )

    @command(cli, "login")
    @click.option("--api-key", required=True, metavar="KEY", help="An API key (sbk_...).")
    @click.option(
        "--api-url", metavar="URL", help="API the key belongs to (default: profile, $SB_API_URL, local)."
    )
    def login(state: State, api_key: str, api_url: str | None) -> None:
        """Check an API key against the API and keep it in the profile."""
        api_key = api_key.strip()
        if not api_key.startswith("sbk_"):
            raise click.BadParameter("Switchboard API keys start with sbk_", param_hint="'--api-key'")
        url = state.api_url(api_url)
        try:
            with state.client(api_key=api_key, api_url=url) as client:
                me = client.me()
        except switchboard.AuthenticationError as exc:
            raise CliError(f"login failed: {exc.message}; this API key was not accepted by {url}") from None
        path = _save(state, Profile(url, api_key, me.tenant.id, me.tenant.name, me.tenant.admin_email))
        if state.json:
            emit_json(me)
            return
        output.note(
            f"Logged in to {me.tenant.name} as {'an' if me.key.role[:1] in 'aeiou' else 'a'} {me.key.role} key; "
            f"saved to profile '{state.profile_name}' in {path}."
        )

    @command(cli, "whoami")
    def whoami(state: State) -> None:
        """Show the tenant and key the profile uses."""
        with state.client() as client:
            me = client.me()
        if state.json:
            emit_json(me)
            return
        output.details(
            [
                ("tenant", f"{me.tenant.name} ({me.tenant.id})"),
                ("admin email", me.tenant.admin_email),
                ("plan", me.tenant.plan),
                ("key", f"{me.key.name or me.key.prefix} ({me.key.id})"),
                ("role", me.key.role),
                ("profile", state.profile_name),
                ("api url", client.base_url),
            ]
        )

    seats = group(cli, "seats", "Seats: how many agents may be logged in at once.")

    @command(seats, "show")
    def seats_show(state: State) -> None:
        """Show purchased, logged-in and available seats."""
        with state.client() as client:
            current = client.seats.get()
        if state.json:
            emit_json(current)
            return
        output.details(_seats_rows(current), title="Seats")

    @command(seats, "buy")
    @click.argument("count", type=SEAT_COUNT, metavar="N")
    def seats_buy(state: State, count: int) -> None:
        """Buy N more seats (1-1000)."""
        with state.client() as client:
            current = client.seats.purchase(count)
        if state.json:
            emit_json(current)
            return
        output.note(f"Bought {count} seat{'s' if count != 1 else ''}.")
        output.details(_seats_rows(current))

    @command(seats, "release")
    @click.argument("count", type=SEAT_COUNT, metavar="N")
    def seats_release(state: State, count: int) -> None:
        """Give back N seats (refused while they are needed by logged-in agents)."""
        with state.client() as client:
            current = client.seats.release(count)
        if state.json:
            emit_json(current)
            return
        output.note(f"Released {count} seat{'s' if count != 1 else ''}.")
        output.details(_seats_rows(current))

    @command(cli, "usage")
    @click.option(
        "--from", "start", type=TIMESTAMP, help="Start (ISO 8601; default: start of this month, UTC)."
    )
    @click.option("--to", "end", type=TIMESTAMP, help="End (ISO 8601; default: now).")
    def usage(state: State, start: datetime | None, end: datetime | None) -> None:
        """Seat usage over a period, in seat-hours (what billing counts)."""
        if start and end and end <= start:
            raise click.BadParameter("--to must be after --from", param_hint="'--to'")
        with state.client() as client:
            report = client.usage(start, end)
        if state.json:
            emit_json(report)
            return
        output.note(
            f"{report.seat_hours:.2f} seat-hours ({report.seat_seconds:.0f} seat-seconds) "
            f"from {output.short_time(report.from_)} to {output.short_time(report.to)}"
        )
        output.table(
            ("FROM", "TO", "SEATS PURCHASED", "FOR", "SEAT-HOURS"),
            (
                [
                    output.short_time(i.from_),
                    output.short_time(i.to),
                    i.seats,
                    _duration(i.seconds),
                    f"{i.seats * i.seconds / 3600:.2f}",
                ]
                for i in report.intervals
            ),
            empty="no seats in this period",
        )

    keys = group(cli, "keys", "API keys: create, list and revoke.")

    @command(keys, "create")
    @click.option("--role", required=True, type=click.Choice(ROLES), help="What the key may do.")
    @click.option("--name", default=None, metavar="NAME", help="A label to tell keys apart.")
    def keys_create(state: State, role: str, name: str | None) -> None:
        """Create an API key; its secret is shown this once."""
        with state.client() as client:
            key = client.keys.create(role, name=name if name is not None else switchboard.UNSET)
        if state.json:
            emit_json(key)
            return
        output.note(f"Created {key.role} key {key.id}. Its secret is shown only now:")
        output.note(f"  {key.key}")

    @command(keys, "list")
    def keys_list(state: State) -> None:
        """List the tenant's API keys (revoked ones included)."""
        with state.client() as client:
            found = list(client.keys.iter(page_size=200))
        if state.json:
            emit_json(found)
            return
        output.table(KEY_COLUMNS, (_key_row(k) for k in found))

    @command(keys, "revoke")
    @click.argument("key_id", metavar="ID")
    def keys_revoke(state: State, key_id: str) -> None:
        """Revoke a key: it stops working at once."""
        with state.client() as client:
            client.keys.revoke(key_id)
            key = client.keys.get(key_id)
        if state.json:
            emit_json(key)
            return
        output.note(f"Revoked key {key.id} ({key.name or key.prefix}).")

    @command(cli, "audit")
    @click.option("--last", type=click.IntRange(1, 100000), metavar="N", help="Only the last N entries.")
    def audit(state: State, last: int | None) -> None:
        """The audit log: who changed what, and when (oldest first)."""
        with state.client() as client:
            entries = list(client.audit.iter(page_size=200))
        if last is not None:
            entries = entries[-last:]
        if state.json:
            emit_json(entries)
            return
        output.table(
            ("AT", "ROLE", "ACTION", "TARGET", "ACTOR KEY"),
            (
                [
                    output.short_time(e.at),
                    e.actor_role,
                    e.action,
                    f"{e.target_type} {e.target_id or ''}".strip(),
                    e.actor_key_id,
                ]
                for e in entries
            ),
        )

"""The agent's shift from the admin's side: `agents invite` (a one-time link to set a password and sign in
at /agent/), `agents signout` (force an agent out everywhere), `desk-settings` (the tenant's disposition
codes, away reasons, and whether an open wrap-up form extends wrap-up), and `settings` (tenant-wide: the
agents' reconnect grace)."""

from __future__ import annotations

import click
import switchboard

from .context import CliError, State, command, emit_json, group
from .output import details, note, table
from .resources import find_agent, find_queue, find_site

__all__ = ["register"]


def _choices(option: str, values: tuple[str, ...]) -> list[switchboard.Choice]:
    out = []
    for value in values:
        code, sep, label = value.partition("=")
        if not sep or not code.strip() or not label.strip():
            raise click.BadParameter(f"{value!r}: write CODE=Label, e.g. sale=Sale made", param_hint=option)
        out.append(switchboard.Choice(code=code.strip(), label=label.strip()))
    return out


def _show(settings: switchboard.DeskSettings) -> None:
    table(["disposition", "label"], [(c.code, c.label) for c in settings.dispositions])
    table(
        ["away reason", "label"], [(c.code, c.label) for c in settings.away_reasons], empty="no away reasons"
    )
    details([("open wrap-up form extends wrap-up", "yes" if settings.wrap_up_form_extends else "no")])


def register(cli: click.Group) -> None:
    agents = cli.commands["agents"]
    assert isinstance(agents, click.Group)

    @command(agents, "invite")
    @click.argument("email")
    def agents_invite(state: State, email: str) -> None:
        """A one-time link for the agent with EMAIL to set a password and sign in at /agent/ (it replaces
        the agent's earlier links; valid 72 hours by default). Send it to the agent; it is shown once."""
        with state.client() as client:
            agent = find_agent(client, email)
            invite = client.agents.invite(agent.email)
        if state.json:
            emit_json(invite)
            return
        # click.echo, not rich: a link must never be wrapped (it is copied and pasted whole).
        click.echo(invite.url)
        note(f"for {agent.name} <{agent.email}>, valid until {invite.expires_at:%Y-%m-%d %H:%M} UTC")

    @command(agents, "signout")
    @click.argument("agent_ref", metavar="EMAIL_OR_ID")
    def agents_signout(state: State, agent_ref: str) -> None:
        """Sign an agent out everywhere: its browser sessions end and open desktops close within seconds."""
        with state.client() as client:
            agent = find_agent(client, agent_ref)
            ended = client.agents.signout(agent.id)
        if state.json:
            emit_json(ended)
            return
        note(f"{agent.name} <{agent.email}> signed out ({ended.sessions_ended} session(s) ended)")

    @command(agents, "state")
    @click.argument("agent_ref", metavar="EMAIL_OR_ID")
    @click.argument("presence", type=click.Choice(["available", "away"]))
    @click.option("--reason", help="Why the agent is away (e.g. coaching); only with away.")
    def agents_state(state: State, agent_ref: str, presence: str, reason: str | None) -> None:
        """Set an agent's presence as a supervisor (a supervisor or admin key); their desk shows it at once."""
        if reason is not None and presence != "away":
            raise CliError("--reason goes with away only")
        with state.client() as client:
            agent = find_agent(client, agent_ref)
            done = client.agents.set_state(agent.id, presence, reason)
        if state.json:
            emit_json(done)
            return
        note(f"{agent.name} <{agent.email}> is now {presence}" + (f" ({reason})" if reason else ""))

    supervisors = group(cli, "supervisors", "People who watch the floor at /supervisor/ (the console).")

    @command(supervisors, "invite")
    @click.argument("email")
    @click.option("--admin", is_flag=True, help="Invite an admin (all of the API) instead of a supervisor.")
    def supervisors_invite(state: State, email: str, admin: bool) -> None:
        """A one-time link for a supervisor with EMAIL to set a password (an admin key). They then sign in at
        /supervisor/. The link is shown once."""
        with state.client() as client:
            invite = client.invite_supervisor(email, "admin" if admin else "supervisor")
        if state.json:
            emit_json(invite)
            return
        click.echo(invite.url)
        note(f"for {invite.email} ({invite.role}), valid until {invite.expires_at:%Y-%m-%d %H:%M} UTC")

    @command(supervisors, "queues")
    @click.argument("account_id", metavar="ACCOUNT_ID")
    @click.option(
        "--queue", "queues", multiple=True, metavar="NAME_OR_ID", help="A queue they watch (repeat)."
    )
    @click.option("--all", "everything", is_flag=True, help="The whole tenant again.")
    def supervisors_queues(state: State, account_id: str, queues: tuple[str, ...], everything: bool) -> None:
        """Limit a supervisor (ACCOUNT_ID: `supervisors invite --json` shows it) to some queues, or --all."""
        if everything == bool(queues):
            raise CliError("give --queue (one or more) or --all")
        with state.client() as client:
            ids = None if everything else [find_queue(client, q).id for q in queues]
            scope = client.set_supervisor_queues(account_id, ids)
        if state.json:
            emit_json(scope)
            return
        where = "the whole tenant" if scope.queue_ids is None else f"{len(scope.queue_ids)} queue(s)"
        note(f"{scope.email} now watches {where}")

    @command(supervisors, "scope")
    @click.argument("account_id", metavar="ACCOUNT_ID")
    @click.option(
        "--queue", "queues", multiple=True, metavar="NAME_OR_ID", help="A queue they watch (repeat)."
    )
    @click.option("--site", "sites", multiple=True, metavar="NAME_OR_ID", help="A site they watch (repeat).")
    @click.option("--all", "everything", is_flag=True, help="The whole tenant again.")
    def supervisors_scope(
        state: State, account_id: str, queues: tuple[str, ...], sites: tuple[str, ...], everything: bool
    ) -> None:
        """Limit a supervisor to some queues and sites: they see those queues and the queues at those sites,
        and the agents at those sites or serving those queues; --all: the whole tenant."""
        if everything == bool(queues or sites):
            raise CliError("give --queue and/or --site (one or more), or --all")
        with state.client() as client:
            queue_ids = None if everything else [find_queue(client, q).id for q in queues]
            site_ids = None if everything else [find_site(client, x).id for x in sites]
            scope = client.set_supervisor_scope(account_id, queue_ids, site_ids)
        if state.json:
            emit_json(scope)
            return
        if scope.queue_ids is None and scope.site_ids is None:
            note(f"{scope.email} now watches the whole tenant")
        else:
            note(
                f"{scope.email} now watches {len(scope.queue_ids or [])} queue(s) and {len(scope.site_ids or [])} site(s)"
            )

    alerts = group(cli, "alerts", "The thresholds that raise queue alerts in the supervisor console.")

    def _threshold(value: int | None, unit: str, unset: str) -> str:
        return unset if value is None else f"{value}{unit}"

    def _policy_row(name: str, p: switchboard.AlertPolicy) -> list[str]:
        return [
            name,
            _threshold(p.longest_wait_seconds, " s", "queue's SL threshold"),
            _threshold(p.service_level_below_percent, " %", "queue's target"),
            _threshold(p.waiting_over, "", "-"),
            _threshold(p.away_over_percent, " %", "-"),
        ]

    @command(alerts, "show")
    def alerts_show(state: State) -> None:
        """Show the default thresholds and each queue's own."""
        with state.client() as client:
            policies = client.alert_policy()
        if state.json:
            emit_json(policies)
            return
        rows = [_policy_row("(default)", policies.default)]
        rows += [_policy_row(q.queue_name, q.policy) for q in policies.queues]
        table(["QUEUE", "LONGEST WAIT OVER", "SL UNDER", "WAITING OVER", "AWAY OVER"], rows)

    @command(alerts, "set")
    @click.option("--queue", metavar="NAME_OR_ID", help="This queue's own thresholds (else the default).")
    @click.option(
        "--longest-wait", type=click.IntRange(1, 86_400), metavar="SECONDS", help="A caller waiting longer."
    )
    @click.option(
        "--sl-below", type=click.IntRange(1, 100), metavar="PERCENT", help="Service level today under this."
    )
    @click.option(
        "--waiting-over", type=click.IntRange(1, 100_000), metavar="N", help="More callers waiting."
    )
    @click.option(
        "--away-over", type=click.IntRange(1, 100), metavar="PERCENT", help="More signed-in agents away."
    )
    def alerts_set(
        state: State,
        queue: str | None,
        longest_wait: int | None,
        sl_below: int | None,
        waiting_over: int | None,
        away_over: int | None,
    ) -> None:
        """Set alert thresholds (an admin key); a threshold not given is unset: the wait is held to the
        queue's SL threshold, the service level to the queue's target, waiting and away are not watched."""
        policy = switchboard.AlertPolicy(
            longest_wait_seconds=longest_wait,
            service_level_below_percent=sl_below,
            waiting_over=waiting_over,
            away_over_percent=away_over,
        )
        with state.client() as client:
            queue_id = find_queue(client, queue).id if queue else None
            saved = client.set_alert_policy(policy, queue_id)
        if state.json:
            emit_json(saved)
            return
        note(f"alert thresholds set for {queue or 'every queue without its own'}")

    @command(alerts, "clear")
    @click.option("--queue", required=True, metavar="NAME_OR_ID", help="The queue whose own thresholds go.")
    def alerts_clear(state: State, queue: str) -> None:
        """Remove a queue's own thresholds: the default applies there again (an admin key)."""
        with state.client() as client:
            client.clear_alert_policy(find_queue(client, queue).id)
        if state.json:
            emit_json({"queue": queue, "cleared": True})
            return
        note(f"{queue} now follows the default thresholds")

    desk = group(cli, "desk-settings", "The agent desk's disposition codes, away reasons and wrap-up rule.")

    @command(desk, "show")
    def desk_show(state: State) -> None:
        """Show the disposition codes, away reasons and wrap-up rule agents see."""
        with state.client() as client:
            settings = client.desk_settings.get()
        if state.json:
            emit_json(settings)
            return
        _show(settings)

    @command(desk, "set")
    @click.option(
        "--disposition", "dispositions", multiple=True, metavar="CODE=Label", help="Repeat for each."
    )
    @click.option(
        "--away-reason", "away_reasons", multiple=True, metavar="CODE=Label", help="Repeat for each."
    )
    @click.option(
        "--form-extends/--no-form-extends",
        default=None,
        help="Whether an open wrap-up form keeps the agent out of new offers until Done.",
    )
    def desk_set(
        state: State, dispositions: tuple[str, ...], away_reasons: tuple[str, ...], form_extends: bool | None
    ) -> None:
        """Replace the disposition codes and/or away reasons (what is not given is kept)."""
        if not dispositions and not away_reasons and form_extends is None:
            raise CliError("give --disposition, --away-reason or --form-extends/--no-form-extends")
        with state.client() as client:
            current = client.desk_settings.get()
            wanted = switchboard.DeskSettings(
                dispositions=_choices("--disposition", dispositions)
                if dispositions
                else current.dispositions,
                away_reasons=_choices("--away-reason", away_reasons)
                if away_reasons
                else current.away_reasons,
                wrap_up_form_extends=current.wrap_up_form_extends if form_extends is None else form_extends,
            )
            saved = client.desk_settings.set(wanted)
        if state.json:
            emit_json(saved)
            return
        _show(saved)

    tenant = group(
        cli, "settings", "Tenant-wide settings: agent reconnect grace, time zone, callers' language."
    )

    def _show_settings(settings: switchboard.TenantSettings) -> None:
        details(
            [
                (
                    "agent grace",
                    f"{settings.agent_grace_seconds} s (a disconnected agent keeps its seat and calls)",
                ),
                ("time zone", f"{settings.timezone} (queue hours and holidays)"),
                ("language", f"{settings.language} (what callers hear from the platform)"),
                ("monitor notice", f"{settings.monitor_notice} (who is told a supervisor stepped in)"),
            ]
        )

    @command(tenant, "show")
    def settings_show(state: State) -> None:
        """Show the tenant's settings."""
        with state.client() as client:
            settings = client.settings.get()
        if state.json:
            emit_json(settings)
            return
        _show_settings(settings)

    @command(tenant, "set")
    @click.option(
        "--agent-grace",
        type=click.IntRange(0, 600),
        metavar="SECONDS",
        help="How long (0-600 s, default 20) an agent whose desk lost its connection keeps its seat and calls"
        " before it is signed out and its caller goes back in line.",
    )
    @click.option("--timezone", metavar="ZONE", help="IANA time zone queue hours are read in (Europe/Paris).")
    @click.option(
        "--language",
        type=click.Choice(["en", "fr", "es", "de"]),
        help="What callers hear from the platform (position announcements, closed messages).",
    )
    @click.option(
        "--monitor-notice",
        type=click.Choice(["none", "agent", "caller", "both"]),
        help="Who is told when a supervisor listens, whispers or barges in: nobody (default), the agent"
        " (a line on the desk), the caller (a short announcement) or both.",
    )
    def settings_set(
        state: State,
        agent_grace: int | None,
        timezone: str | None,
        language: str | None,
        monitor_notice: str | None,
    ) -> None:
        """Change the tenant's settings (admin key); what is not given is kept."""
        if agent_grace is None and timezone is None and language is None and monitor_notice is None:
            raise CliError(
                "give --agent-grace SECONDS, --timezone ZONE, --language LANG or --monitor-notice WHO"
            )
        with state.client() as client:
            saved = client.settings.update(
                agent_grace_seconds=agent_grace,
                timezone=timezone,
                language=language,
                monitor_notice=monitor_notice,
            )
        if state.json:
            emit_json(saved)
            return
        _show_settings(saved)

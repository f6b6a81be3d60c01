"""Configuration commands: sites, agents, queues and numbers.

Objects can be named the way people think of them (a site or queue by name, an agent by email, a number
by itself) or by id; names are looked up with the SDK, never guessed.
"""

from __future__ import annotations

from typing import Any

import click
import switchboard

from . import output, queue_rules
from .context import CliError, State, command, emit_json, group
from .parsing import (
    E164,
    ENDPOINT,
    LANGUAGES,
    RECORDING,
    REQUIREMENTS,
    RETENTION,
    SERVICE_LEVEL,
    SKILLS,
    TENANT_SETTING,
    is_uuid,
    parse_e164,
)

__all__ = ["register"]

PAGE = 200


def find_site(client: switchboard.Client, ref: str) -> switchboard.Site:
    if is_uuid(ref):
        return client.sites.get(ref)
    wanted = ref.strip().casefold()
    sites = list(client.sites.iter(page_size=PAGE))
    for site in sites:
        if site.name.casefold() == wanted:
            return site
    known = ", ".join(s.name for s in sites) or "none"
    raise CliError(f"no site named {ref!r} (sites: {known})")


def find_agent(client: switchboard.Client, ref: str) -> switchboard.Agent:
    if is_uuid(ref):
        return client.agents.get(ref)
    if "@" not in ref:
        raise click.BadParameter(f"{ref!r} is neither an agent id nor an email address")
    wanted = ref.strip().casefold()
    for agent in client.agents.iter(page_size=PAGE):
        if agent.email.casefold() == wanted:
            return agent
    raise CliError(f"no agent with email {ref!r}")


def find_queue(client: switchboard.Client, ref: str) -> switchboard.Queue:
    if is_uuid(ref):
        return client.queues.get(ref)
    wanted = ref.strip().casefold()
    for queue in client.queues.iter(page_size=PAGE):
        if queue.name.casefold() == wanted:
            return queue
    raise CliError(f"no queue named {ref!r}")


def find_number(client: switchboard.Client, ref: str) -> switchboard.Number:
    if is_uuid(ref):
        return client.numbers.get(ref)
    try:
        wanted = parse_e164(ref)
    except ValueError as exc:
        raise click.BadParameter(f"neither a number id nor an E.164 number: {exc}") from None
    for number in client.numbers.iter(page_size=PAGE):
        if number.e164 == wanted:
            return number
    raise CliError(f"this tenant holds no number {wanted}")


ENDPOINT_HELP = (
    "Where the agent is reached instead of the browser: a SIP URI (sip:ann@pbx.example.com, a desk phone or "
    "softphone) or an outside number (+15550100, dialled through the tenant's trunk)."
)


def _reached(agent: switchboard.Agent) -> str:
    return f"at {agent.endpoint}" if agent.endpoint else "in the browser"


def _skills(skills: dict[str, int], op: str) -> str:
    return " ".join(f"{name}{op}{level}" for name, level in skills.items())


def _names(objects: list[switchboard.Site] | list[switchboard.Queue]) -> dict[str, str]:
    return {o.id: o.name for o in objects}


def register(cli: click.Group) -> None:
    # Sites ------------------------------------------------------------------------------------------
    sites = group(cli, "sites", "Sites: groups of agents (an office, or agents at home).")

    @command(sites, "add")
    @click.argument("name")
    @click.option("--timezone", default="UTC", show_default=True, metavar="TZ", help="IANA time zone.")
    @click.option("--kind", type=click.Choice(["office", "home"]), default="office", show_default=True)
    def sites_add(state: State, name: str, timezone: str, kind: str) -> None:
        """Add a site."""
        with state.client() as client:
            site = client.sites.create(name, timezone=timezone, kind=kind)
        if state.json:
            emit_json(site)
            return
        output.note(f"Added site {site.name} ({site.kind}, {site.timezone}), id {site.id}.")

    @command(sites, "update")
    @click.argument("site", metavar="NAME_OR_ID")
    @click.option("--name", "new_name", metavar="NAME", help="A new name.")
    @click.option("--timezone", metavar="TZ", help="IANA time zone.")
    @click.option("--kind", type=click.Choice(["office", "home"]))
    def sites_update(
        state: State, site: str, new_name: str | None, timezone: str | None, kind: str | None
    ) -> None:
        """Change a site's name, time zone or kind; only what is given changes."""
        fields = {
            k: v for k, v in (("name", new_name), ("timezone", timezone), ("kind", kind)) if v is not None
        }
        if not fields:
            raise click.UsageError("nothing to change: give --name, --timezone or --kind")
        with state.client() as client:
            updated = client.sites.update(find_site(client, site).id, **fields)
        if state.json:
            emit_json(updated)
            return
        output.note(f"Updated site {updated.name} ({updated.kind}, {updated.timezone}).")

    @command(sites, "list")
    def sites_list(state: State) -> None:
        """List sites."""
        with state.client() as client:
            found = list(client.sites.iter(page_size=PAGE))
        if state.json:
            emit_json(found)
            return
        output.table(("ID", "NAME", "TIMEZONE", "KIND"), ([s.id, s.name, s.timezone, s.kind] for s in found))

    @command(sites, "remove")
    @click.argument("site", metavar="NAME_OR_ID")
    def sites_remove(state: State, site: str) -> None:
        """Remove a site (refused while agents or queues use it, or if it is the last one)."""
        with state.client() as client:
            found = find_site(client, site)
            client.sites.delete(found.id)
        if state.json:
            emit_json(found)
            return
        output.note(f"Removed site {found.name} ({found.id}).")

    # Agents -----------------------------------------------------------------------------------------
    agents = group(cli, "agents", "Agents: the people who take contacts.")

    @command(agents, "add")
    @click.option("--name", required=True, help="Full name.")
    @click.option("--email", required=True, help="Email address (unique in the tenant).")
    @click.option("--site", metavar="NAME_OR_ID", help="Site (default: the tenant's first site).")
    @click.option("--skills", type=SKILLS, help="Skills with proficiency 0-10, e.g. sales=8,billing=5.")
    @click.option("--languages", type=LANGUAGES, help="Languages spoken, e.g. en,zh-HK.")
    @click.option("--endpoint", type=ENDPOINT, help=ENDPOINT_HELP)
    def agents_add(
        state: State,
        name: str,
        email: str,
        site: str | None,
        skills: dict[str, int] | None,
        languages: list[str] | None,
        endpoint: str | None,
    ) -> None:
        """Add an agent."""
        with state.client() as client:
            site_id = find_site(client, site).id if site else switchboard.UNSET
            agent = client.agents.create(
                name,
                email,
                site_id=site_id,
                skills=skills if skills is not None else switchboard.UNSET,
                languages=languages if languages is not None else switchboard.UNSET,
                endpoint=endpoint if endpoint is not None else switchboard.UNSET,
            )
        if state.json:
            emit_json(agent)
            return
        output.note(f"Added agent {agent.name} <{agent.email}>, id {agent.id}, reached {_reached(agent)}.")

    @command(agents, "update")
    @click.argument("agent", metavar="EMAIL_OR_ID")
    @click.option("--name", help="Full name.")
    @click.option("--email", "new_email", metavar="EMAIL", help="New email address.")
    @click.option("--site", metavar="NAME_OR_ID", help="Move to this site.")
    @click.option("--skills", type=SKILLS, help="Replace the skills, e.g. sales=8,billing=5.")
    @click.option("--languages", type=LANGUAGES, help="Replace the languages, e.g. en,zh-HK.")
    @click.option("--endpoint", type=ENDPOINT, help=ENDPOINT_HELP)
    @click.option("--browser", is_flag=True, help="Reach the agent in the browser again (clears --endpoint).")
    @click.option(
        "--can-dial/--cannot-dial",
        "can_dial",
        default=None,
        help="Allow (or stop) the agent placing outbound calls.",
    )
    @click.option(
        "--voicemail-capacity",
        type=click.IntRange(0, 10),
        help="Voicemails the agent may hold at once (0: never offered one).",
    )
    def agents_update(
        state: State,
        agent: str,
        name: str | None,
        new_email: str | None,
        site: str | None,
        skills: dict[str, int] | None,
        languages: list[str] | None,
        endpoint: str | None,
        browser: bool,
        can_dial: bool | None,
        voicemail_capacity: int | None,
    ) -> None:
        """Change an agent: only the options given change."""
        if endpoint is not None and browser:
            raise click.UsageError("give --endpoint or --browser, not both")
        unset = switchboard.UNSET
        with state.client() as client:
            found = find_agent(client, agent)
            updated = client.agents.update(
                found.id,
                name=name if name is not None else unset,
                email=new_email if new_email is not None else unset,
                site_id=find_site(client, site).id if site else unset,
                skills=skills if skills is not None else unset,
                languages=languages if languages is not None else unset,
                endpoint=None if browser else (endpoint if endpoint is not None else unset),
                can_dial=can_dial if can_dial is not None else unset,
                voicemail_capacity=voicemail_capacity if voicemail_capacity is not None else unset,
            )
        if state.json:
            emit_json(updated)
            return
        dials = "may dial out" if updated.can_dial else "may not dial out"
        output.note(f"Updated agent {updated.name} <{updated.email}>, reached {_reached(updated)}; {dials}.")

    @command(agents, "list")
    def agents_list(state: State) -> None:
        """List agents."""
        with state.client() as client:
            found = list(client.agents.iter(page_size=PAGE))
            site_names = _names(list(client.sites.iter(page_size=PAGE))) if found and not state.json else {}
        if state.json:
            emit_json(found)
            return
        output.table(
            ("ID", "NAME", "EMAIL", "SITE", "SKILLS", "LANGUAGES", "ENDPOINT"),
            (
                [
                    a.id,
                    a.name,
                    a.email,
                    site_names.get(a.site_id or "", a.site_id),
                    _skills(a.skills, "="),
                    ",".join(a.languages),
                    a.endpoint or "browser",
                ]
                for a in found
            ),
        )

    @command(agents, "remove")
    @click.argument("agent", metavar="EMAIL_OR_ID")
    def agents_remove(state: State, agent: str) -> None:
        """Remove an agent."""
        with state.client() as client:
            found = find_agent(client, agent)
            client.agents.delete(found.id)
        if state.json:
            emit_json(found)
            return
        output.note(f"Removed agent {found.name} <{found.email}> ({found.id}).")

    # Queues -----------------------------------------------------------------------------------------
    queues = group(cli, "queues", "Queues: where contacts wait for an agent with the right skills.")

    def queue_options(fn: Any) -> Any:
        """The settings `queues create` and `queues update` share."""
        for option in reversed(
            [
                click.option(
                    "--skills",
                    type=REQUIREMENTS,
                    help="Minimum proficiency per skill, in quotes: 'sales>=5,billing>=3'.",
                ),
                click.option(
                    "--sl",
                    "service_level",
                    type=SERVICE_LEVEL,
                    help="Service-level target PERCENT/SECONDS, e.g. 80/20.",
                ),
                click.option("--priority", type=click.IntRange(1, 99), help="1-99; higher is served first."),
                click.option(
                    "--wrap-up",
                    type=click.IntRange(0, 3600),
                    metavar="SECONDS",
                    help="After-contact work time.",
                ),
                click.option(
                    "--short-abandon",
                    type=click.IntRange(0, 600),
                    metavar="SECONDS",
                    help="Abandons sooner do not count against SL.",
                ),
                click.option(
                    "--offer-timeout",
                    type=click.IntRange(5, 300),
                    metavar="SECONDS",
                    help="How long an offer rings at an agent before it counts as missed (default 20).",
                ),
                click.option(
                    "--recording",
                    type=RECORDING,
                    metavar="all|none|PERCENT|tenant",
                    help="Record every call, none, a share (e.g. 25), or follow the tenant's setting.",
                ),
                click.option(
                    "--recording-retention",
                    type=RETENTION,
                    metavar="DAYS|tenant",
                    help="Days recordings of this queue are kept (then purged), or the tenant's setting.",
                ),
                click.option(
                    "--recording-announcement",
                    metavar="TEXT|none|tenant",
                    help="What recorded callers hear before an agent (none: nothing here; tenant: the tenant's).",
                ),
                click.option("--site", metavar="NAME_OR_ID", help="Site the queue belongs to."),
            ]
        ):
            fn = option(fn)
        return fn

    def queue_fields(client: switchboard.Client, given: dict[str, Any]) -> dict[str, Any]:
        unset = switchboard.UNSET
        level = given["service_level"]

        def value(key: str) -> Any:
            return given[key] if given[key] is not None else unset

        return {
            "skills": value("skills"),
            "priority": value("priority"),
            "sl_percent": level[0] if level else unset,
            "sl_seconds": level[1] if level else unset,
            "wrap_up_seconds": value("wrap_up"),
            "short_abandon_seconds": value("short_abandon"),
            "offer_timeout_seconds": value("offer_timeout"),
            # `tenant` clears the queue's own setting: None is sent, the tenant's setting applies.
            "recording_percent": None if given["recording"] == TENANT_SETTING else value("recording"),
            "recording_retention_days": (
                None if given["recording_retention"] == TENANT_SETTING else value("recording_retention")
            ),
            "recording_announcement": _announcement(given["recording_announcement"]),
            "site_id": find_site(client, given["site"]).id if given["site"] else unset,
        }

    def _announcement(text: str | None) -> Any:
        if text is None:
            return switchboard.UNSET
        word = text.strip().lower()
        return None if word == TENANT_SETTING else ("" if word == "none" else text)

    @command(queues, "create")
    @click.argument("name")
    @queue_options
    def queues_create(state: State, name: str, **given: Any) -> None:
        """Create a queue."""
        with state.client() as client:
            queue = client.queues.create(name, **queue_fields(client, given))
        if state.json:
            emit_json(queue)
            return
        output.note(
            f"Created queue {queue.name} (SL {queue.sl_percent}/{queue.sl_seconds}, priority {queue.priority}), "
            f"id {queue.id}."
        )

    @command(queues, "update")
    @click.argument("queue", metavar="NAME_OR_ID")
    @click.option("--name", "new_name", metavar="NAME", help="A new name.")
    @queue_options
    @queue_rules.rule_options
    def queues_update(state: State, queue: str, new_name: str | None, **given: Any) -> None:
        """Change a queue's settings and routing rules; only what is given changes (--skills replaces all
        its skills; --overflow, --hours, --holiday and --priority, given once or more, replace that list)."""
        with state.client() as client:
            found = find_queue(client, queue)
            rules = queue_rules.rule_fields(client, given, find_queue)
            fields = {k: v for k, v in queue_fields(client, given).items() if v is not switchboard.UNSET}
            if new_name is not None:
                fields["name"] = new_name
            if not fields and not rules:
                raise click.UsageError("nothing to change: give at least one option (see --help)")
            # Rules first: they are the likelier to be refused, and then nothing has changed.
            updated = client.queues.set_rules(found.id, **rules) if rules else found
            if fields:
                updated = client.queues.update(found.id, **fields)
            names = {q.id: q.name for q in client.queues.iter(page_size=PAGE)} if rules else {}
            flows = {f.id: f.name for f in client.flows.list().items} if rules.get("closed_flow_id") else {}
        if state.json:
            emit_json(updated)
            return
        if rules:
            output.details(
                queue_rules.describe_rules(updated, names, flows), title=f"Routing rules of {updated.name}"
            )
        output.note(
            f"Updated queue {updated.name}: skills {_skills(updated.skills, '>=') or 'none'}, "
            f"SL {updated.sl_percent}/{updated.sl_seconds}, priority {updated.priority}, "
            f"wrap-up {updated.wrap_up_seconds}s."
        )

    @command(queues, "list")
    def queues_list(state: State) -> None:
        """List queues."""
        with state.client() as client:
            found = list(client.queues.iter(page_size=PAGE))
        if state.json:
            emit_json(found)
            return
        output.table(
            ("ID", "NAME", "SKILLS", "PRIORITY", "SL", "SHORT ABANDON", "WRAP-UP"),
            (
                [
                    q.id,
                    q.name,
                    _skills(q.skills, ">="),
                    q.priority,
                    f"{q.sl_percent}/{q.sl_seconds}",
                    f"{q.short_abandon_seconds}s",
                    f"{q.wrap_up_seconds}s",
                ]
                for q in found
            ),
        )

    @command(queues, "remove")
    @click.argument("queue", metavar="NAME_OR_ID")
    @click.option(
        "--force",
        is_flag=True,
        help="Remove it even while numbers or flows use it: those numbers are left unrouted.",
    )
    def queues_remove(state: State, queue: str, force: bool) -> None:
        """Remove a queue (refused while numbers or flows use it, unless --force)."""
        numbers: list[str] = []
        flows: list[str] = []
        with state.client() as client:
            found = find_queue(client, queue)
            try:
                client.queues.delete(found.id)
            except switchboard.ConflictError as exc:
                numbers = [e.message for e in exc.errors if e.field == "numbers"]
                flows = [e.message for e in exc.errors if e.field == "flows"]
                if not force:
                    users = "; ".join(
                        f"{k} {', '.join(v)}" for k, v in (("numbers", numbers), ("flows", flows)) if v
                    )
                    raise CliError(
                        f"queues remove refused: queue {found.name} is in use ({users}); "
                        "route them elsewhere first (numbers route, flows deploy), or pass --force "
                        "(its numbers are then unrouted)"
                    ) from None
                client.queues.delete(found.id, force=True)
        if state.json:
            emit_json({**switchboard.to_dict(found), "unrouted_numbers": numbers, "flows_naming_it": flows})
            return
        output.note(f"Removed queue {found.name} ({found.id}).")
        if numbers:
            output.note(
                f"Now unrouted: {', '.join(numbers)} (callers hear the unrouted message; each call is "
                "recorded with outcome unrouted). Route them with: switchboard numbers route E164 --queue NAME"
            )
        if flows:
            output.note(
                f"Flows still naming {found.name}: {', '.join(flows)}; redeploy them with another queue "
                "(switchboard flows deploy FILE)."
            )

    # Numbers ----------------------------------------------------------------------------------------
    numbers = group(cli, "numbers", "Phone numbers (E.164) that callers dial.")

    @command(numbers, "claim")
    @click.argument("e164", type=E164, metavar="E164")
    @click.option("--queue", metavar="NAME_OR_ID", help="Send the number's calls to this queue.")
    def numbers_claim(state: State, e164: str, queue: str | None) -> None:
        """Claim a phone number for this tenant."""
        with state.client() as client:
            # Look the queue up first, so a typo does not leave a claimed number behind.
            queue_id = find_queue(client, queue).id if queue else None
            number = client.numbers.claim(e164)
            if queue_id:
                number = client.numbers.update(number.id, queue_id=queue_id)
        if state.json:
            emit_json(number)
            return
        target = f", routed to queue {queue}" if queue_id else ""
        output.note(f"Claimed {number.e164}{target}, id {number.id}.")

    @command(numbers, "list")
    def numbers_list(state: State) -> None:
        """List the tenant's numbers."""
        with state.client() as client:
            found = list(client.numbers.iter(page_size=PAGE))
            queue_names: dict[str, str] = {}
            flow_names: dict[str, str] = {}
            if found and not state.json:
                queue_names = _names(list(client.queues.iter(page_size=PAGE)))
                if any(n.flow_id for n in found):
                    cursor = None
                    while True:
                        page = client.flows.list(limit=PAGE, cursor=cursor)
                        flow_names.update({f.id: f.name for f in page.items})
                        if not (cursor := page.next_cursor):
                            break
        if state.json:
            emit_json(found)
            return

        def route(n: switchboard.Number) -> str:
            # A flow answers the number's calls whatever its queue says: only the flow is shown then.
            if n.flow_id:
                return f"flow {flow_names.get(n.flow_id, n.flow_id)}"
            if n.queue_id:
                return f"queue {queue_names.get(n.queue_id, n.queue_id)}"
            return "nowhere (unrouted message)"

        output.table(("ID", "E164", "CALLS GO TO"), ([n.id, n.e164, route(n)] for n in found))

    @command(numbers, "release")
    @click.argument("number", metavar="E164_OR_ID")
    def numbers_release(state: State, number: str) -> None:
        """Give a number back."""
        with state.client() as client:
            found = find_number(client, number)
            client.numbers.release(found.id)
        if state.json:
            emit_json(found)
            return
        output.note(f"Released {found.e164} ({found.id}).")

    queue_rules.register(cli, find_site, find_queue, PAGE)

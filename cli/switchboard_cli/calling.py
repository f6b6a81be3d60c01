"""`switchboard calling`: the calls the platform places for the tenant (callbacks: agent or customer first,
attempts, the retry gap, ring time) and the caller ID they show (docs/routing.md, "Callbacks"); and
`switchboard dnc`: the numbers never to call (every outbound call is checked against them)."""

from __future__ import annotations

from typing import Any

import click

from . import output
from .context import State, command, emit_json, group

__all__ = ["register"]

MODES = {"agent-first": "agent_first", "customer-first": "customer_first"}


def _show(state: State, current: dict[str, Any]) -> None:
    if state.json:
        emit_json(current)
        return
    mode = {v: k for k, v in MODES.items()}.get(current["callback_mode"], current["callback_mode"])
    output.details(
        [
            ("callbacks", mode),
            ("attempts", current["callback_attempts"]),
            ("retry after", f"{current['callback_retry_seconds']} s"),
            ("ring for", f"{current['callback_ring_seconds']} s"),
            ("caller ID", current["caller_id"] or "the number the customer called"),
        ]
    )


def register(cli: click.Group) -> None:
    calling = group(cli, "calling", "Calls the platform places for you: callbacks and their caller ID.")

    @command(calling, "show")
    def calling_show(state: State) -> None:
        """Show the tenant's calling settings."""
        with state.client() as client:
            _show(state, client.calling.settings())

    @command(calling, "set")
    @click.option(
        "--callbacks",
        "mode",
        type=click.Choice(sorted(MODES)),
        help="agent-first: an agent accepts, then the customer is dialled; customer-first: the other way.",
    )
    @click.option("--attempts", type=click.IntRange(1, 10), help="Calls placed before giving up (1-10).")
    @click.option("--retry-seconds", type=click.IntRange(1, 86400), help="Wait between attempts.")
    @click.option("--ring-seconds", type=click.IntRange(5, 120), help="How long the customer's phone rings.")
    @click.option(
        "--caller-id",
        metavar="E164|none",
        help="One of your numbers shown to the customer; none: the number they called.",
    )
    def calling_set(
        state: State,
        mode: str | None,
        attempts: int | None,
        retry_seconds: int | None,
        ring_seconds: int | None,
        caller_id: str | None,
    ) -> None:
        """Change the tenant's calling settings (only what is given)."""
        changes: dict[str, Any] = {}
        if mode is not None:
            changes["callback_mode"] = MODES[mode]
        if attempts is not None:
            changes["callback_attempts"] = attempts
        if retry_seconds is not None:
            changes["callback_retry_seconds"] = retry_seconds
        if ring_seconds is not None:
            changes["callback_ring_seconds"] = ring_seconds
        if caller_id is not None:
            changes["caller_id"] = None if caller_id.lower() == "none" else caller_id
        if not changes:
            raise click.UsageError("give at least one setting to change (see --help)")
        with state.client() as client:
            _show(state, client.calling.update(**changes))

    dnc = group(cli, "dnc", "The do-not-call list: numbers no agent may dial (outbound calls are refused).")

    @command(dnc, "add")
    @click.argument("e164")
    @click.option("--note", default="", help="Why (up to 200 characters), e.g. 'asked on 2026-12-01'.")
    def dnc_add(state: State, e164: str, note: str) -> None:
        """Put a number on the do-not-call list."""
        with state.client() as client:
            added = client.calling.never_call(e164, note)
        if state.json:
            emit_json(added)
        else:
            output.note(f"{added['e164']} is on the do-not-call list.")

    @command(dnc, "list")
    def dnc_list(state: State) -> None:
        """The numbers never to call."""
        with state.client() as client:
            found = client.calling.do_not_call()
        if state.json:
            emit_json(found)
            return
        output.table(("NUMBER", "SINCE", "NOTE"), ([n["e164"], n["created_at"], n["note"]] for n in found))

    @command(dnc, "remove")
    @click.argument("e164")
    def dnc_remove(state: State, e164: str) -> None:
        """Take a number off the do-not-call list."""
        with state.client() as client:
            client.calling.allow_call(e164)  # not on the list: the API's 404 says so
        if not state.json:
            output.note(f"{e164} may be called again.")
        else:
            emit_json({"e164": e164, "removed": True})

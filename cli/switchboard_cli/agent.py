"""`switchboard agent connect`: a headless agent in the terminal (the SDK's AgentSession), to test a setup
before people log in and for synthetic monitoring; and `switchboard agents token`, the agent token itself.

`agent connect` finds the agent with the profile's admin key, issues its token (and fresh ones before each
expires), signs in, goes available and prints one line per event (with --json one JSON object per line).
With --auto-answer it takes every offer once its audio is connected, plays --play to the caller, records
what it hears to --record, and wraps up with --disposition after each call; without it, offers are only
printed (they ring out: the agent misses them). It exits after --max-calls calls, or on Ctrl-C (SIGINT)
or SIGTERM, signing out first.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import msgspec
import switchboard
from switchboard import agent_events as ae

from .context import CliError, State, command, emit_json, group
from .resources import find_agent

__all__ = ["register"]

RECORDING_WAIT_S = 5.0


class Printer:
    """One line per event: `HH:MM:SS event  details`, or one JSON object with `event` and `at`."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json

    def __call__(self, event: str, text: str, **fields: Any) -> None:
        now = datetime.now(UTC)
        if self.as_json:
            record = {"event": event, "at": now.isoformat(timespec="milliseconds"), **fields}
            click.echo(json.dumps(record, ensure_ascii=False, default=str))
        else:
            click.echo(f"{now:%H:%M:%S} {event:<10} {text}")

    def event(self, e: ae.AgentEvent) -> None:
        if isinstance(e, ae.ContactOffer):
            self("offer", describe_offer(e), **_fields(e, "contact_id", "offer_id", "expires_at", "context"))
        elif isinstance(e, ae.Answered):
            self("answered", f"contact {e.contact_id}", contact_id=e.contact_id, offer_id=e.offer_id)
        elif isinstance(e, ae.ContactWithdrawn):
            self(
                "withdrawn",
                f"contact {e.contact_id}: {e.reason}",
                **_fields(e, "contact_id", "offer_id", "reason"),
            )
        elif isinstance(e, ae.ContactConnected):
            self("connected", f"contact {e.contact_id}", contact_id=e.contact_id, leg_id=e.leg_id)
        elif isinstance(e, ae.ContactEnded):
            text = f"contact {e.contact_id}: {e.cause or 'ended'} by {e.by or '?'} after {e.duration:.1f} s"
            self("ended", text, **_fields(e, "contact_id", "cause", "duration", "by"))
        elif isinstance(e, ae.AgentState):
            reason = f" ({e.reason})" if e.reason else ""
            self("state", f"{e.state}{reason}", state=e.state, reason=e.reason)
        elif isinstance(e, ae.Recorded):
            text = f"contact {e.contact_id}: {e.seconds:.1f} s to {e.path}"
            self("recorded", text, **_fields(e, "contact_id", "path", "seconds", "rate"))
        elif isinstance(e, ae.ErrorMessage):
            self("error", f"{e.code}: {e.reason}", code=e.code, reason=e.reason)
        elif isinstance(e, ae.LegState):
            self("audio", f"leg {e.leg_id} {e.state}", leg_id=e.leg_id, state=e.state)
        elif isinstance(e, ae.Ready):
            text = f"token renewed, now until {_clock(e.expires_at)}"
            self("renewed", text, agent_id=e.agent_id, expires_at=e.expires_at)
        elif isinstance(e, ae.Unknown):
            self(e.kind, json.dumps(e.data, default=str)[:200], **e.data)
        # pong, leg answers and ends: nothing to tell


def _fields(e: ae.AgentEvent, *names: str) -> dict[str, Any]:
    return {name: msgspec.to_builtins(getattr(e, name)) for name in names}


def describe_offer(offer: ae.ContactOffer) -> str:
    c = offer.context
    caller = c.caller.number or "unknown caller"
    if c.caller.name:
        caller += f" ({c.caller.name})"
    parts = [f"contact {offer.contact_id} from {caller}"]
    if c.dialled:
        parts[0] += f" to {c.dialled}"
    if c.queue is not None and c.queue.name:
        parts.append(f"queue {c.queue.name}")
    parts.append(f"waited {c.waited.ivr_s:.1f} s in IVR, {c.waited.queue_s:.1f} s in queue")
    if c.ivr is not None:
        ivr = f"IVR {c.ivr.flow} {'>'.join(c.ivr.path)}"
        parts.append(ivr + (f" digits {c.ivr.digits}" if c.ivr.digits else ""))
    if c.history.today:
        parts.append(f"{c.history.today} contact(s) today")
    if c.transfer is not None:
        parts.append(f"transferred: {c.transfer.note}" if c.transfer.note else "transferred")
    return "; ".join(parts)


def _token_source(api_url: str, api_key: str, agent_id: str, first: str) -> Any:
    """The first token as issued, then a fresh one from the API each time the session asks."""
    issued = [first]

    async def fresh() -> str:
        if issued:
            return issued.pop()
        async with switchboard.AsyncClient(api_key=api_key, base_url=api_url, timeout=10) as client:
            return (await client.agents.token(agent_id)).token

    return fresh


async def _run(
    session: switchboard.AgentSession,
    out: Printer,
    *,
    initial_state: str,
    auto_answer: bool,
    disposition: str,
    max_calls: int | None,
    recording: bool,
    dial: str | None = None,
    hangup_after: float | None = None,
) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    calls = 0
    unrecorded: set[str] = set()  # ended contacts whose recording is not reported yet
    ended: set[str] = set()
    early: dict[str, ae.Recorded] = {}  # recordings reported before their contact's end
    finishing_since: float | None = None
    try:
        async with session:
            ready = session.ready
            assert ready is not None
            out(
                "ready",
                f"agent {ready.agent_id} on {session.base_url} (token until {_clock(ready.expires_at)})",
                agent_id=ready.agent_id,
                tenant_id=ready.tenant_id,
                expires_at=ready.expires_at,
            )
            result = await session.login(state=initial_state)
            out(
                "signed_in",
                f"as {result.get('state', initial_state)}",
                state=result.get("state", initial_state),
            )
            dialled: str | None = None
            connected = False
            later: set[asyncio.Task[None]] = set()
            if dial is not None:
                try:
                    placed = await session.dial(dial)
                except switchboard.AgentCommandError as exc:
                    raise CliError(f"cannot dial {dial}: {exc.reason} ({exc.code})") from None
                dialled = str(placed["contact_id"])
                out("dialled", f"{dial} from {placed['caller_id']} (contact {dialled})", **placed)
            while True:
                if finishing_since is not None and (
                    not unrecorded or time.monotonic() - finishing_since > RECORDING_WAIT_S
                ):
                    break
                next_event = asyncio.ensure_future(session.next_event(timeout=1.0))
                stopping = asyncio.ensure_future(stop.wait())
                await asyncio.wait({next_event, stopping}, return_when=asyncio.FIRST_COMPLETED)
                stopping.cancel()
                if stop.is_set():
                    next_event.cancel()
                    break
                try:
                    event = next_event.result()
                except switchboard.AgentClosedError:
                    raise CliError(
                        f"the server closed the session ({session.close_code} {session.close_reason})".strip()
                    ) from None
                if event is None:
                    continue
                if isinstance(event, ae.Recorded) and event.contact_id not in ended:
                    # The audio leg can close before the contact's end reaches us: the file is reported
                    # after the call's `ended`, in the order a reader expects.
                    early[event.contact_id] = event
                    continue
                out.event(event)
                if isinstance(event, ae.ContactConnected) and event.contact_id == dialled:
                    connected = True
                    if hangup_after is not None:
                        later.add(asyncio.create_task(_hang_up_after(session, dialled, hangup_after, out)))
                if isinstance(event, ae.Recorded):
                    unrecorded.discard(event.contact_id)
                elif isinstance(event, ae.ContactEnded):
                    calls += 1
                    ended.add(event.contact_id)
                    last = max_calls is not None and calls >= max_calls
                    if last:
                        # Away before the wrap-up ends: once it does, routing would offer the next call.
                        try:
                            await session.set_state("away", "other")
                        except switchboard.AgentCommandError as exc:
                            out(
                                "error",
                                f"going away after the last call: {exc}",
                                code=exc.code,
                                reason=exc.reason,
                            )
                    if recording:
                        unrecorded.add(event.contact_id)
                    if event.contact_id in early:
                        out.event(early.pop(event.contact_id))
                        unrecorded.discard(event.contact_id)
                    if auto_answer or dialled is not None:
                        try:
                            await session.wrap_up(event.contact_id, disposition)
                            out(
                                "wrapped_up",
                                f"contact {event.contact_id}: {disposition}",
                                contact_id=event.contact_id,
                                disposition=disposition,
                            )
                        except switchboard.AgentCommandError as exc:
                            out(
                                "error",
                                f"wrap-up of {event.contact_id}: {exc}",
                                code=exc.code,
                                reason=exc.reason,
                            )
                    if last:
                        finishing_since = time.monotonic()  # after the last recording is reported
            signed_in = session.signed_in
        # Leaving `async with` signed out (the session does so when no call is up) and closed the socket.
        if signed_in:
            out("signed_out", f"after {calls} call(s)", calls=calls)
        if dialled is not None and not connected:
            raise CliError(f"the call to {dial} was not answered", exit_code=3)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
    return calls


async def _hang_up_after(
    session: switchboard.AgentSession, contact_id: str, seconds: float, out: Printer
) -> None:
    """--hangup-after: the agent hangs up its outbound call (errors are printed: the far end may have)."""
    await asyncio.sleep(seconds)
    try:
        await session.hangup(contact_id)
        out("hung_up", f"contact {contact_id}", contact_id=contact_id)
    except switchboard.AgentError as exc:
        out("error", f"hanging up {contact_id}: {exc}", reason=str(exc))


def _clock(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%H:%M:%SZ")


def register(cli: click.Group) -> None:
    agent = group(
        cli, "agent", "Be an agent from the terminal: a headless softphone (docs/agent-protocol.md)."
    )

    @command(agent, "connect")
    @click.option("--email", required=True, metavar="EMAIL_OR_ID", help="The agent to be.")
    @click.option("--auto-answer", is_flag=True, help="Take every offer (once its audio is connected).")
    @click.option(
        "--play",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="Audio file played to each caller from the moment the call connects (WAV, any rate/channels).",
    )
    @click.option("--loop", "play_loop", is_flag=True, help="Repeat --play until the call ends.")
    @click.option(
        "--record",
        metavar="FILE",
        help="Record what the agent hears (16-bit mono WAV); {contact_id} in FILE gives one file per call.",
    )
    @click.option("--max-calls", type=click.IntRange(min=1), help="Exit after this many calls.")
    @click.option(
        "--state",
        "initial_state",
        type=click.Choice(["available", "away"]),
        default="available",
        show_default=True,
        help="Presence after signing in.",
    )
    @click.option(
        "--disposition", default="auto", show_default=True, help="Wrap-up disposition after each call."
    )
    @click.option(
        "--dial",
        metavar="E164",
        help="Place one outbound call to this number through the tenant's trunk, then exit (the agent must "
        "be allowed to dial). Exit 3 when nobody answers.",
    )
    @click.option(
        "--hangup-after",
        type=click.FloatRange(min=0.5),
        metavar="SECONDS",
        help="With --dial: hang up this long after the call connects (otherwise the far end hangs up).",
    )
    def agent_connect(
        state: State,
        email: str,
        auto_answer: bool,
        play: Path | None,
        play_loop: bool,
        record: str | None,
        max_calls: int | None,
        initial_state: str,
        disposition: str,
        dial: str | None,
        hangup_after: float | None,
    ) -> None:
        """Sign in as an agent and take calls: one line per event (--json: one JSON object per line)."""
        if not 1 <= len(disposition) <= 64:
            raise click.BadParameter("1 to 64 characters", param_hint="--disposition")
        if hangup_after is not None and dial is None:
            raise click.UsageError("--hangup-after needs --dial")
        if dial is not None:
            if initial_state != "available":
                raise click.UsageError("--dial needs --state available (the agent takes its own call)")
            max_calls = 1
        api_url, api_key = state.api_url(), state.api_key()
        with state.client() as client:
            found = find_agent(client, email)
            issued = client.agents.token(found.id)
        out = Printer(state.json)
        try:
            session = switchboard.AgentSession(
                api_url,
                _token_source(api_url, api_key, found.id, issued.token),
                auto_answer=auto_answer,
                # Without --auto-answer offers are only printed (docs/cli.md): no leg is opened for them.
                audio=auto_answer or dial is not None,
                play=play,
                play_loop=play_loop,
                record=record,
            )
        except ValueError as exc:
            raise CliError(str(exc), 2) from None
        asyncio.run(
            _run(
                session,
                out,
                initial_state=initial_state,
                auto_answer=auto_answer,
                disposition=disposition,
                max_calls=max_calls,
                recording=record is not None,
                dial=dial,
                hangup_after=hangup_after,
            )
        )

    agents = cli.commands["agents"]
    assert isinstance(agents, click.Group)

    @command(agents, "token")
    @click.argument("agent_ref", metavar="EMAIL_OR_ID")
    def agents_token(state: State, agent_ref: str) -> None:
        """Issue a short-lived token (10 minutes) for the agent's websocket (the agent desktop, /agent/)."""
        with state.client() as client:
            issued = client.agents.token(find_agent(client, agent_ref).id)
        if state.json:
            emit_json(issued)
            return
        # click.echo, not rich: a token must never be wrapped (it is copied and pasted whole).
        click.echo(issued.token)
        # In the fragment, the token never reaches a server's access log.
        click.echo(f"agent desktop: {state.api_url()}/agent/#token={issued.token}")

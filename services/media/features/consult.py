"""Attended transfer over the bridge: `consult`, `complete_transfer`, `cancel_transfer`.

The agent's leg (`call_id`) is bridged to a caller. `consult` puts the caller on music and bridges the agent
to a consult target: another leg of this worker (`other_call_id`), or an outside number (`to`) that media
originates through the tenant's trunk (the agent hears ringback while it rings). `complete_transfer` bridges
the caller to the target and releases the agent's leg from both (it stays up: whoever commands decides what
becomes of it); `cancel_transfer` hangs the target up if media originated it (otherwise only unbridges it)
and bridges the agent back to the caller. Legs ending on the way are handled by the same table.

`Consultation` is the sans-IO core: one state machine per transfer, every move (a command, a leg's end, the
target answering) one entry of a table that says the next state and the actions, which `Consults` (the
adapter) carries out with the service's bridge and call commands.
"""

from __future__ import annotations

import asyncio
import enum
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from services.kernel import events as ev
from services.kernel.ids import new_id
from services.kernel.log import get_logger
from services.kernel.messages import Reply
from services.kernel.serving import Later
from services.media.features.transfer import ringback
from services.media.ua.call import CallState

if TYPE_CHECKING:
    from services.media.bridge.bridging import Endpoint
    from services.media.features.host import FeatureHost

__all__ = [
    "Action",
    "ConsultState",
    "Consultation",
    "Consults",
    "Party",
    "TransferStateError",
    "Trigger",
]

log = get_logger()


class ConsultState(enum.Enum):
    RINGING = "ringing"  # the outside number rings: the agent hears ringback, the caller music
    CONSULTING = "consulting"  # the agent talks with the target; the caller hears music
    COMPLETED = "completed"  # the caller talks with the target; the agent is released
    CANCELLED = "cancelled"  # the agent is back with the caller (or the transfer could not go on)


class Party(enum.Enum):
    CALLER = "caller"
    AGENT = "agent"
    TARGET = "target"


class Trigger(enum.Enum):
    ANSWERED = "answered"  # the outside number answered
    COMPLETE = "complete"
    CANCEL = "cancel"
    FAILED = "failed"  # the outside number did not answer in time
    CALLER_ENDED = "caller_ended"
    AGENT_ENDED = "agent_ended"
    TARGET_ENDED = "target_ended"


class Action(enum.Enum):
    SEPARATE_AGENT = "separate_agent"  # unbridge the agent from whoever it is bridged to
    HANGUP_TARGET = "hangup_target"  # only ever for a target media originated
    STOP_MUSIC = "stop_music"  # the caller's music on hold
    STOP_RINGBACK = "stop_ringback"  # the agent's ringback
    JOIN_AGENT_TARGET = "join_agent_target"
    JOIN_AGENT_CALLER = "join_agent_caller"
    JOIN_CALLER_TARGET = "join_caller_target"


class TransferStateError(Exception):
    pass


_S, _T, _A = ConsultState, Trigger, Action
# (state, trigger) -> (next state, event reason, actions). A leg that ended is already unbridged (the
# service separates its bridge before telling us), so the table never separates a dead leg.
_MOVES: dict[tuple[ConsultState, Trigger], tuple[ConsultState, str, tuple[Action, ...]]] = {
    (_S.RINGING, _T.ANSWERED): (_S.CONSULTING, "command", (_A.STOP_RINGBACK, _A.JOIN_AGENT_TARGET)),
    (_S.RINGING, _T.CANCEL): (
        _S.CANCELLED,
        "command",
        (_A.HANGUP_TARGET, _A.STOP_RINGBACK, _A.STOP_MUSIC, _A.JOIN_AGENT_CALLER),
    ),
    (_S.RINGING, _T.FAILED): (
        _S.CANCELLED,
        "failed",
        (_A.HANGUP_TARGET, _A.STOP_RINGBACK, _A.STOP_MUSIC, _A.JOIN_AGENT_CALLER),
    ),
    (_S.RINGING, _T.TARGET_ENDED): (
        _S.CANCELLED,
        "failed",
        (_A.STOP_RINGBACK, _A.STOP_MUSIC, _A.JOIN_AGENT_CALLER),
    ),
    # Nobody left to consult for: the outside number is not called for nothing.
    (_S.RINGING, _T.CALLER_ENDED): (_S.CANCELLED, "caller_ended", (_A.HANGUP_TARGET, _A.STOP_RINGBACK)),
    # The caller stays on music: on hold, for whoever decides next.
    (_S.RINGING, _T.AGENT_ENDED): (_S.CANCELLED, "agent_ended", (_A.HANGUP_TARGET,)),
    (_S.CONSULTING, _T.COMPLETE): (
        _S.COMPLETED,
        "command",
        (_A.SEPARATE_AGENT, _A.STOP_MUSIC, _A.JOIN_CALLER_TARGET),
    ),
    (_S.CONSULTING, _T.CANCEL): (
        _S.CANCELLED,
        "command",
        (_A.SEPARATE_AGENT, _A.HANGUP_TARGET, _A.STOP_MUSIC, _A.JOIN_AGENT_CALLER),
    ),
    # The agent left mid-consult: the caller goes to the target (the usual PBX rule: hanging up transfers).
    (_S.CONSULTING, _T.AGENT_ENDED): (_S.COMPLETED, "agent_ended", (_A.STOP_MUSIC, _A.JOIN_CALLER_TARGET)),
    (_S.CONSULTING, _T.TARGET_ENDED): (
        _S.CANCELLED,
        "target_ended",
        (_A.STOP_MUSIC, _A.JOIN_AGENT_CALLER),
    ),
    # The target answered but could not be bridged to the agent: as if it had not answered.
    (_S.CONSULTING, _T.FAILED): (
        _S.CANCELLED,
        "failed",
        (_A.SEPARATE_AGENT, _A.HANGUP_TARGET, _A.STOP_MUSIC, _A.JOIN_AGENT_CALLER),
    ),
    # The agent stays with the target; nobody is left to transfer.
    (_S.CONSULTING, _T.CALLER_ENDED): (_S.CANCELLED, "caller_ended", ()),
}


@dataclass(eq=False)
class Consultation:
    """One attended transfer, sans-IO: the legs, whether media originated the target, and the state."""

    tenant_id: uuid.UUID
    agent: uuid.UUID
    caller: uuid.UUID
    target: uuid.UUID
    originated: bool
    state: ConsultState
    reason: str = "command"

    @property
    def done(self) -> bool:
        return self.state in (ConsultState.COMPLETED, ConsultState.CANCELLED)

    def party(self, call_id: uuid.UUID) -> Party | None:
        return {self.caller: Party.CALLER, self.agent: Party.AGENT, self.target: Party.TARGET}.get(call_id)

    def on(self, trigger: Trigger) -> list[Action]:
        """Move on `trigger`: the actions to carry out, in order. TransferStateError when it does not apply."""
        move = _MOVES.get((self.state, trigger))
        if move is None:
            raise TransferStateError(f"cannot {trigger.value} a transfer that is {self.state.value}")
        self.state, self.reason, actions = move
        if not self.originated:
            # A leg of this worker that we did not call is not ours to hang up: it is only unbridged.
            return [a for a in actions if a is not Action.HANGUP_TARGET]
        return list(actions)


_ENDED = {
    Party.CALLER: Trigger.CALLER_ENDED,
    Party.AGENT: Trigger.AGENT_ENDED,
    Party.TARGET: Trigger.TARGET_ENDED,
}
# Why a consult's reply failed, by the reason the consultation ended with.
_FAILED_CODES = {"caller_ended": "ended", "agent_ended": "ended", "command": "cancelled"}


class Consults:
    """The adapter: the worker's consultations by each of their legs, and the commands."""

    def __init__(self, service: FeatureHost) -> None:
        self.service = service
        self.by_leg: dict[uuid.UUID, Consultation] = {}
        # An outside consult's wait while it rings, woken when the table moves (by id of the consultation).
        self._moved: dict[int, asyncio.Future[None]] = {}

    def involves(self, call_id: uuid.UUID) -> bool:
        return call_id in self.by_leg

    # --- commands ---

    def handle(
        self, command: ev.MediaConsult | ev.MediaCompleteTransfer | ev.MediaCancelTransfer
    ) -> Reply | Later | None:
        """The reply, or None: another worker holds the leg, or the reply comes later (an outside number)."""
        agent = self.service.endpoint(command.tenant_id, command.call_id)
        if agent is None:
            return None
        if agent.call.state is CallState.ENDED:
            return Reply(ok=False, error="the call has ended", code="ended")
        if isinstance(command, ev.MediaConsult):
            return self._consult(agent, command)
        consultation = self.by_leg.get(command.call_id)
        if consultation is None or consultation.agent != command.call_id:
            return Reply(ok=False, error="no transfer in progress for this leg", code="state")
        if isinstance(command, ev.MediaCompleteTransfer):
            return self._complete(consultation)
        return self._cancel(consultation)

    def _consult(self, agent: Endpoint, command: ev.MediaConsult) -> Reply | Later:
        service, tenant = self.service, command.tenant_id
        if (command.to is None) == (command.other_call_id is None):
            return Reply(ok=False, error="consult needs either `to` or `other_call_id`", code="invalid")
        if agent.call.state is not CallState.ANSWERED:
            return Reply(ok=False, error="the agent's leg is not answered", code="state")
        if self.involves(agent.call.call_id):
            return Reply(ok=False, error="a transfer is in progress on this leg", code="conflict")
        bridge = service.bridges.get(agent.call.call_id)
        if bridge is None:
            return Reply(ok=False, error="the agent's leg is not bridged to a caller", code="state")
        if service.monitors.involves(agent.call.call_id):
            return Reply(ok=False, error="the call is monitored", code="conflict")
        caller = bridge.other(agent.call.call_id)
        if command.to is not None:
            if not command.to.lstrip("+").isdigit():
                return Reply(ok=False, error=f"{command.to!r} is not a phone number", code="invalid")
            return self._start_outside(agent, caller, command)
        target_id = command.other_call_id
        assert target_id is not None
        if target_id in (agent.call.call_id, caller.call.call_id):
            return Reply(ok=False, error="the consult target is already on this call", code="invalid")
        target = service.endpoint(tenant, target_id)
        if target is None:
            return Reply(
                ok=False, error="the consult target is not held by this media worker", code="not_found"
            )
        if target.call.state is not CallState.ANSWERED:
            return Reply(ok=False, error="the consult target is not answered", code="state")
        if target_id in service.bridges or self.involves(target_id) or service.monitors.involves(target_id):
            return Reply(
                ok=False, error="the consult target is busy (bridged or monitoring)", code="conflict"
            )
        consultation = Consultation(
            tenant,
            agent.call.call_id,
            caller.call.call_id,
            target_id,
            False,
            ConsultState.RINGING,
        )
        self._begin(consultation)
        return self._answered(consultation)

    def _begin(self, consultation: Consultation) -> None:
        """Separate agent and caller; music for the caller."""
        service = self.service
        for call_id in (consultation.agent, consultation.caller, consultation.target):
            self.by_leg[call_id] = consultation
        bridge = service.bridges.get(consultation.agent)
        if bridge is not None:
            service.separate(bridge, "unbridge")
        caller = service.endpoint(consultation.tenant_id, consultation.caller)
        if caller is not None:
            service.edge.emit(
                caller.call.play(service.edge.prompts.moh, play_id=None, now=service.edge.now(), loop=True)
            )

    def _answered(self, consultation: Consultation) -> Reply:
        """The target is up: bridge the agent to it."""
        self._run(consultation, Trigger.ANSWERED)
        if consultation.done:  # the bridge failed and the table took it back
            return Reply(ok=False, error="the consult leg could not be bridged", code="consult_failed")
        return Reply(
            ok=True,
            data={
                "caller_call_id": str(consultation.caller),
                "target_call_id": str(consultation.target),
            },
        )

    def _start_outside(self, agent: Endpoint, caller: Endpoint, command: ev.MediaConsult) -> Later:
        """Originate to the outside number; the reply comes Later, when it answered (and is bridged) or
        failed. The command server keeps serving other calls meanwhile."""
        consultation = Consultation(
            command.tenant_id,
            agent.call.call_id,
            caller.call.call_id,
            new_id(),  # the outside leg's id: this is the adapter side, not the table
            True,
            ConsultState.RINGING,
        )

        # Registered before the first await: a second consult on the leg meanwhile is a conflict.
        for call_id in (consultation.agent, consultation.caller, consultation.target):
            self.by_leg[call_id] = consultation
        return Later(self._outside(consultation, command))

    async def _outside(self, consultation: Consultation, command: ev.MediaConsult) -> Reply:
        service, edge = self.service, self.service.edge
        assert command.to is not None
        error = await edge.originate(
            call_id=consultation.target,
            tenant_id=consultation.tenant_id,
            to=command.to,
            caller_id=command.caller_id,
            trunk_name=command.trunk,
        )
        if error is not None or consultation.done:
            self._forget(consultation)
            if error is not None:
                return Reply(ok=False, error=f"consult failed: {error}", code="originate_failed")
            return self._failed_reply(consultation)
        agent = service.endpoint(consultation.tenant_id, consultation.agent)
        caller = service.endpoint(consultation.tenant_id, consultation.caller)
        if agent is None or caller is None or service.bridges.get(consultation.agent) is None:
            # A leg ended (or was unbridged) while the trunk was looked up: nothing to consult for.
            target = edge.legs.get(consultation.target)
            if target is not None:
                edge.hangup(target, "transfer_cancelled")
            self._forget(consultation)
            return Reply(ok=False, error="the agent's call changed meanwhile", code="state")
        self._begin(consultation)
        edge.emit(agent.call.play(ringback(), play_id=None, now=edge.now(), loop=True))
        # Woken by the target answering or ending, or the table moving on (agent or caller left).
        answered = edge.reaches(consultation.target, CallState.ANSWERED)
        moved = asyncio.get_running_loop().create_future()
        self._moved[id(consultation)] = moved
        try:
            await asyncio.wait(
                (answered, moved), timeout=command.timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            answered.cancel()
            moved.cancel()
            self._moved.pop(id(consultation), None)
        if consultation.state is not ConsultState.RINGING:
            return self._failed_reply(consultation)
        leg = edge.legs.get(consultation.target)
        if leg is not None and leg.call.state is CallState.ANSWERED:
            return self._answered(consultation)
        self._run(consultation, Trigger.FAILED)
        return Reply(ok=False, error=f"consult failed: {command.to} did not answer", code="consult_failed")

    @staticmethod
    def _failed_reply(consultation: Consultation) -> Reply:
        code = _FAILED_CODES.get(consultation.reason, "consult_failed")
        return Reply(ok=False, error=f"consult ended: {consultation.reason}", code=code)

    def _complete(self, consultation: Consultation) -> Reply:
        refusal = self._check_free(consultation, consultation.caller, consultation.target)
        if refusal is not None:
            return refusal
        self._run(consultation, Trigger.COMPLETE)
        bridge = self.service.bridges.get(consultation.caller)
        if bridge is None or bridge.other(consultation.caller).call.call_id != consultation.target:
            return Reply(ok=False, error="the caller could not be bridged to the target", code="failed")
        return Reply(
            ok=True,
            data={
                "caller_call_id": str(consultation.caller),
                "target_call_id": str(consultation.target),
                "path": bridge.path,
            },
        )

    def _cancel(self, consultation: Consultation) -> Reply:
        refusal = self._check_free(consultation, consultation.caller)
        if refusal is not None:
            return refusal
        self._run(consultation, Trigger.CANCEL)
        return Reply(ok=True, data={"caller_call_id": str(consultation.caller)})

    def _check_free(self, consultation: Consultation, *call_ids: uuid.UUID) -> Reply | None:
        """The legs the next bridge needs are up and not taken by someone else's `bridge` meanwhile."""
        if consultation.state is ConsultState.RINGING and consultation.target in call_ids:
            return Reply(ok=False, error="the consult target has not answered yet", code="state")
        for call_id in call_ids:
            side = self.service.endpoint(consultation.tenant_id, call_id)
            if side is None or side.call.state is not CallState.ANSWERED:
                return Reply(ok=False, error=f"call {call_id} is not up", code="state")
            bridge = self.service.bridges.get(call_id)
            if bridge is not None and consultation.agent not in bridge.call_ids:
                return Reply(ok=False, error=f"call {call_id} was bridged elsewhere", code="conflict")
        return None

    # --- legs ending (MediaService._leg_ended, after their bridge was separated) ---

    def leg_ended(self, call_id: uuid.UUID) -> None:
        consultation = self.by_leg.get(call_id)
        if consultation is None:
            return
        party = consultation.party(call_id)
        assert party is not None
        try:
            self._run(consultation, _ENDED[party])
        except TransferStateError:
            self._forget(consultation)

    # --- carrying out the table's actions ---

    def _run(self, consultation: Consultation, trigger: Trigger) -> None:
        actions = consultation.on(trigger)
        moved = self._moved.get(id(consultation))
        if moved is not None and not moved.done():
            moved.set_result(None)
        if consultation.done:
            # Forgotten before acting: hanging the target up ends a leg, which comes back to leg_ended.
            self._forget(consultation)
        service, edge, tenant = self.service, self.service.edge, consultation.tenant_id

        def side(call_id: uuid.UUID) -> Endpoint | None:
            found = service.endpoint(tenant, call_id)
            return found if found is not None and found.call.state is not CallState.ENDED else None

        joined = True
        for action in actions:
            if action is Action.SEPARATE_AGENT:
                bridge = service.bridges.get(consultation.agent)
                if bridge is not None:
                    service.separate(bridge, "unbridge")
            elif action is Action.HANGUP_TARGET:
                leg = edge.legs.get(consultation.target)
                if leg is not None:
                    edge.hangup(leg, "transfer_cancelled")
            elif action in (Action.STOP_MUSIC, Action.STOP_RINGBACK):
                who = side(consultation.caller if action is Action.STOP_MUSIC else consultation.agent)
                if who is not None:
                    edge.emit(who.call.stop_playback("stopped", edge.now()))
            else:
                a, b = {
                    Action.JOIN_AGENT_TARGET: (consultation.agent, consultation.target),
                    Action.JOIN_AGENT_CALLER: (consultation.agent, consultation.caller),
                    Action.JOIN_CALLER_TARGET: (consultation.caller, consultation.target),
                }[action]
                joined = self._join(tenant, a, b) and joined
                if joined and action is Action.JOIN_CALLER_TARGET and consultation.originated:
                    # The outside leg is ours: the caller leaving ends it, and it leaving ends the caller
                    # (as after a blind `transfer`).
                    service.transfers[a] = b
                    service.transfers[b] = a
        if not joined and trigger is Trigger.ANSWERED:
            # The consult leg could not be bridged: back to the caller as if it had not answered.
            self._run(consultation, Trigger.FAILED)
            return
        log.info(
            "consult_step",
            agent=str(consultation.agent),
            caller=str(consultation.caller),
            target=str(consultation.target),
            state=consultation.state.value,
            reason=consultation.reason,
        )

    def _join(self, tenant: uuid.UUID, a: uuid.UUID, b: uuid.UUID) -> bool:
        reply = self.service.bridge_command(ev.MediaBridge(tenant_id=tenant, call_id=a, other_call_id=b))
        if reply is None or not reply.ok:
            log.warning("consult_bridge_failed", call_id=str(a), other=str(b), error=reply and reply.error)
            return False
        return True

    def _forget(self, consultation: Consultation) -> None:
        for call_id in (consultation.agent, consultation.caller, consultation.target):
            if self.by_leg.get(call_id) is consultation:
                del self.by_leg[call_id]

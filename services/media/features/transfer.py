"""The `transfer` command to an outside number: an outbound leg through the tenant's trunk (outbound.py),
ringback to the caller while it rings, and once it answers the bridge between the two (bridge/bridging.py).

`BlindTransfer` is the sans-IO core: every move (dialled or not, the wait's outcome, the bridge's result) is
one entry of `_MOVES`, which says the next state and the actions; `transfer()` (the adapter) carries them
out. The command's reply waits for the outcome (ok: bridged; not ok: refused, no answer, the caller left),
so the IVR can send a failed transfer to its on_fail node or fallback. The wait runs in its own task: the
command subscription keeps serving other calls meanwhile. Once bridged, either side hanging up ends the
other (MediaService._leg_ended).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from services.kernel import events as ev
from services.kernel.ids import new_id
from services.kernel.messages import Reply
from services.media.ua.call import Call, CallState

if TYPE_CHECKING:
    from services.media.features.host import FeatureHost
    from services.media.ua.leg import Leg

__all__ = [
    "TRANSFER_TIMEOUT_S",
    "BlindTransfer",
    "TransferAction",
    "TransferError",
    "TransferState",
    "TransferTrigger",
    "ringback",
    "transfer",
]

log = logging.getLogger(__name__)

# How long the outside number may ring before the transfer counts as failed.
TRANSFER_TIMEOUT_S = 30.0


class TransferState(enum.Enum):
    DIALLING = "dialling"  # the outbound leg is being placed (trunk, INVITE)
    RINGING = "ringing"  # the outside number rings; the caller hears ringback
    BRIDGING = "bridging"  # it answered: the two legs are being bridged
    BRIDGED = "bridged"  # done: the caller talks with the outside number
    FAILED = "failed"  # the caller stays (the IVR decides what comes next); the outside leg is gone


class TransferTrigger(enum.Enum):
    DIALLED = "dialled"
    NOT_DIALLED = "not_dialled"  # originate refused (no trunk, the tenant's limit, ...)
    ANSWERED = "answered"
    CALLER_ENDED = "caller_ended"
    TARGET_ENDED = "target_ended"  # the outside number did not take the call
    TIMED_OUT = "timed_out"
    BRIDGED = "bridged"
    BRIDGE_FAILED = "bridge_failed"


class TransferAction(enum.Enum):
    PLAY_RINGBACK = "play_ringback"
    STOP_RINGBACK = "stop_ringback"
    BRIDGE = "bridge"
    LINK = "link"  # either leg ending ends the other (MediaService.transfers)
    HANGUP_TARGET = "hangup_target"


class TransferError(Exception):
    pass


_S, _T, _A = TransferState, TransferTrigger, TransferAction
# (state, trigger) -> (next state, actions in order).
_MOVES: dict[tuple[TransferState, TransferTrigger], tuple[TransferState, tuple[TransferAction, ...]]] = {
    (_S.DIALLING, _T.DIALLED): (_S.RINGING, (_A.PLAY_RINGBACK,)),
    (_S.DIALLING, _T.NOT_DIALLED): (_S.FAILED, ()),
    (_S.RINGING, _T.ANSWERED): (_S.BRIDGING, (_A.STOP_RINGBACK, _A.BRIDGE)),
    # The outside number is not left ringing for nobody.
    (_S.RINGING, _T.CALLER_ENDED): (_S.FAILED, (_A.HANGUP_TARGET,)),
    (_S.RINGING, _T.TARGET_ENDED): (_S.FAILED, (_A.STOP_RINGBACK,)),
    (_S.RINGING, _T.TIMED_OUT): (_S.FAILED, (_A.HANGUP_TARGET, _A.STOP_RINGBACK)),
    (_S.BRIDGING, _T.BRIDGED): (_S.BRIDGED, (_A.LINK,)),
    (_S.BRIDGING, _T.BRIDGE_FAILED): (_S.FAILED, (_A.HANGUP_TARGET,)),
}


@dataclass(eq=False)
class BlindTransfer:
    """One blind transfer, sans-IO: its state and, once failed, why (`outcome`, `code`)."""

    to: str
    timeout: float
    state: TransferState = TransferState.DIALLING
    outcome: str = ""
    code: str = ""

    def on(self, trigger: TransferTrigger, outcome: str = "") -> list[TransferAction]:
        """Move on `trigger`: the actions to carry out, in order. TransferError when it does not apply."""
        move = _MOVES.get((self.state, trigger))
        if move is None:
            raise TransferError(f"a transfer that is {self.state.value} cannot take {trigger.value}")
        log.debug("transfer %s -> %s (%s)", self.state.value, move[0].value, trigger.value)
        self.state, actions = move
        if self.state is TransferState.FAILED:
            self.outcome = outcome or _OUTCOMES.get(trigger, "").format(to=self.to, timeout=self.timeout)
            self.code = "ended" if trigger is TransferTrigger.CALLER_ENDED else "transfer_failed"
        return list(actions)

    def waited(self, *, caller_ended: bool, target: CallState | None) -> list[TransferAction]:
        """The ring wait is over (an answer, an end, or the time-out): which of them counts, in this order.
        `target`: the outside leg's state (None: no such leg any more)."""
        if caller_ended:
            return self.on(TransferTrigger.CALLER_ENDED)
        if target is None or target is CallState.ENDED:
            return self.on(TransferTrigger.TARGET_ENDED)
        if target is not CallState.ANSWERED:
            return self.on(TransferTrigger.TIMED_OUT)
        return self.on(TransferTrigger.ANSWERED)


_OUTCOMES = {
    TransferTrigger.CALLER_ENDED: "the caller hung up",
    TransferTrigger.TARGET_ENDED: "{to} did not take the call",
    TransferTrigger.TIMED_OUT: "{to} did not answer within {timeout:.0f} s",
    TransferTrigger.BRIDGE_FAILED: "the legs could not be bridged",
}


def ringback() -> np.ndarray:
    """One cycle of the North American ringback: 440 + 480 Hz for 2 s, then 4 s of silence."""
    t = np.arange(16000) / 8000
    tone = (np.sin(2 * np.pi * 440 * t) + np.sin(2 * np.pi * 480 * t)) * 3000
    return np.concatenate([tone, np.zeros(32000)]).astype(np.int16)


def _ended(call: Call) -> bool:
    # A function, not an inline test: the state changes under us while we await.
    return call.state is CallState.ENDED


async def transfer(
    service: FeatureHost, leg: Leg, command: ev.MediaTransfer, *, timeout: float = TRANSFER_TIMEOUT_S
) -> Reply:
    """The adapter: the command's checks, then the core's moves carried out (originate, the wait without
    polling, ringback, the bridge), then the reply."""
    edge = service.edge
    caller = leg.call
    if caller.state is not CallState.ANSWERED:
        return Reply(ok=False, error="the call is not answered", code="state")
    if caller.call_id in service.bridges:
        return Reply(ok=False, error="the call is bridged already", code="conflict")
    if not command.to.lstrip("+").isdigit():
        return Reply(ok=False, error=f"{command.to!r} is not a phone number", code="invalid")
    core = BlindTransfer(command.to, timeout)
    other: uuid.UUID = new_id()
    bridged: Reply | None = None

    def carry_out(actions: list[TransferAction]) -> None:
        nonlocal bridged
        for action in actions:
            if action is TransferAction.PLAY_RINGBACK:
                edge.emit(caller.play(ringback(), play_id=None, now=edge.now(), loop=True))
            elif action is TransferAction.STOP_RINGBACK:
                if not _ended(caller):
                    edge.emit(caller.stop_playback("stopped", edge.now()))
            elif action is TransferAction.HANGUP_TARGET:
                out_leg = edge.legs.get(other)
                if out_leg is not None and out_leg.call.state is not CallState.ENDED:
                    edge.hangup(out_leg, "transfer_failed")
            elif action is TransferAction.BRIDGE:
                bridged = service.bridge_command(
                    ev.MediaBridge(tenant_id=caller.tenant_id, call_id=caller.call_id, other_call_id=other)
                )
                if bridged is not None and bridged.ok:
                    carry_out(core.on(TransferTrigger.BRIDGED))
                else:
                    error = bridged.error if bridged is not None else None
                    carry_out(core.on(TransferTrigger.BRIDGE_FAILED, error or ""))
            elif action is TransferAction.LINK:
                service.transfers[caller.call_id] = other
                service.transfers[other] = caller.call_id

    error = await edge.originate(
        call_id=other,
        tenant_id=caller.tenant_id,
        to=command.to,
        caller_id=command.caller_id,
        trunk_name=None,
    )
    if error is not None:
        core.on(TransferTrigger.NOT_DIALLED, error)
        return Reply(ok=False, error=f"transfer failed: {error}", code="transfer_failed")
    carry_out(core.on(TransferTrigger.DIALLED))
    # Woken by the outside leg answering or ending, or the caller leaving; no polling.
    answered = edge.reaches(other, CallState.ANSWERED)
    caller_left = edge.reaches(caller.call_id, CallState.ENDED)
    try:
        await asyncio.wait((answered, caller_left), timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        answered.cancel()
        caller_left.cancel()
    out_leg = edge.legs.get(other)
    carry_out(
        core.waited(
            caller_ended=_ended(caller),
            target=out_leg.call.state if out_leg is not None else None,
        )
    )
    if core.state is TransferState.BRIDGED:
        assert bridged is not None
        data = dict(bridged.data or {})
        return Reply(ok=True, data={**data, "call_id": str(caller.call_id), "other_call_id": str(other)})
    # Failed: the outside leg is gone, the caller stays (the IVR decides what comes next).
    return Reply(ok=False, error=f"transfer failed: {core.outcome}", code=core.code)

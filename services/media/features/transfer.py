"""The `transfer` command to an outside number: an outbound leg through the tenant's trunk (outbound.py),
ringback to the caller while it rings, and once it answers the bridge between the two (bridging.py).

The command's reply waits for the outcome (ok: bridged; not ok: refused, no answer, the caller left), so
the IVR can send a failed transfer to its on_fail node or fallback. The wait runs in its own task: the
command subscription keeps serving other calls meanwhile. Once bridged, either side hanging up ends the
other (MediaService._leg_ended).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING

import numpy as np

from services.kernel import events as ev
from services.kernel.ids import new_id
from services.kernel.messages import Reply
from services.media.ua.call import Call, CallState

if TYPE_CHECKING:
    from services.media.features.host import FeatureHost
    from services.media.ua.leg import Leg

__all__ = ["TRANSFER_TIMEOUT_S", "ringback", "transfer"]

# How long the outside number may ring before the transfer counts as failed.
TRANSFER_TIMEOUT_S = 30.0


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
    edge = service.edge
    caller = leg.call
    if caller.state is not CallState.ANSWERED:
        return Reply(ok=False, error="the call is not answered", code="state")
    if caller.call_id in service.bridges:
        return Reply(ok=False, error="the call is bridged already", code="conflict")
    if not command.to.lstrip("+").isdigit():
        return Reply(ok=False, error=f"{command.to!r} is not a phone number", code="invalid")
    other: uuid.UUID = new_id()
    error = await edge.originate(
        call_id=other,
        tenant_id=caller.tenant_id,
        to=command.to,
        caller_id=command.caller_id,
        trunk_name=None,
    )
    if error is not None:
        return Reply(ok=False, error=f"transfer failed: {error}", code="transfer_failed")
    edge.emit(caller.play(ringback(), play_id=None, now=edge.now(), loop=True))
    # Woken by the outside leg answering or ending, or the caller leaving; no polling.
    answered = edge.reaches(other, CallState.ANSWERED)
    caller_left = edge.reaches(caller.call_id, CallState.ENDED)
    try:
        await asyncio.wait((answered, caller_left), timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        answered.cancel()
        caller_left.cancel()
    outcome: str | None = None
    out_leg = edge.legs.get(other)
    if _ended(caller):
        outcome = "the caller hung up"
    elif out_leg is None or out_leg.call.state is CallState.ENDED:
        outcome = f"{command.to} did not take the call"
    elif out_leg.call.state is not CallState.ANSWERED:
        outcome = f"{command.to} did not answer within {timeout:.0f} s"
    if outcome is None:
        edge.emit(caller.stop_playback("stopped", edge.now()))
        bridged = service.bridge_command(
            ev.MediaBridge(tenant_id=caller.tenant_id, call_id=caller.call_id, other_call_id=other)
        )
        if bridged is not None and bridged.ok:
            service.transfers[caller.call_id] = other
            service.transfers[other] = caller.call_id
            data = dict(bridged.data or {})
            return Reply(ok=True, data={**data, "call_id": str(caller.call_id), "other_call_id": str(other)})
        outcome = (bridged.error if bridged is not None else None) or "the legs could not be bridged"
    # Failed: the outside leg goes, the caller stays (the IVR decides what comes next).
    out_leg = edge.legs.get(other)
    if out_leg is not None and out_leg.call.state is not CallState.ENDED:
        edge.hangup(out_leg, "transfer_failed")
    if not _ended(caller):
        edge.emit(caller.stop_playback("stopped", edge.now()))
    code = "ended" if _ended(caller) else "transfer_failed"
    return Reply(ok=False, error=f"transfer failed: {outcome}", code=code)

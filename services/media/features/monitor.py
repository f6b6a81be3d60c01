"""Supervisor monitoring over the bridge: `monitor` (listen / whisper / barge, changed on the fly) and
`unmonitor` (or mode "none").

The command names the supervisor's leg (`call_id`: WebRTC or SIP, answered, in this worker, not bridged)
and the agent's leg (`target_call_id`, bridged); the agent's bridge partner is the caller. While monitored
the bridge carries decoded frames through a three-way bus (bridge/mixbus.py over bridge/mixer.py): every
leg pushes what it hears from its peer and pulls the mix its role may hear. The two-party bridge stays
registered for its legs (so mute, the recording tap and unbridge keep working on it); when the supervisor
leaves it joins again as it was: the no-decode relay for two SIP legs, decoded frames otherwise.

`MonitorSession` is the sans-IO core: its state is the mode (or idle, or ended), and every move (a mode
asked for, unmonitor, the supervisor's leg ending, the bridge separating) is one entry of `_MOVES` with
its actions, which `Monitors` (the adapter) carries out on the bridge, the mix bus and the legs.
"""

from __future__ import annotations

import asyncio
import enum
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from services.kernel import events as ev
from services.kernel.log import get_logger
from services.kernel.messages import Reply
from services.media.bridge.mixbus import MixBus
from services.media.bridge.mixer import MonitorMode, Role
from services.media.ua.call import CallState

if TYPE_CHECKING:
    from services.media.bridge.bridging import Bridge, Endpoint
    from services.media.features.host import FeatureHost

__all__ = [
    "Monitor",
    "MonitorAction",
    "MonitorError",
    "MonitorSession",
    "MonitorState",
    "MonitorTrigger",
    "Monitors",
]

log = get_logger()

Samples = npt.NDArray[np.int16]


class MonitorState(enum.Enum):
    IDLE = "idle"  # checked, not attached yet
    LISTENING = "listening"
    WHISPERING = "whispering"
    BARGING = "barging"
    ENDED = "ended"


class MonitorTrigger(enum.Enum):
    LISTEN = "listen"
    WHISPER = "whisper"
    BARGE = "barge"
    UNMONITOR = "unmonitor"  # the command (or mode none)
    SUPERVISOR_ENDED = "supervisor_ended"
    UNBRIDGED = "unbridged"  # the monitored bridge was separated by command
    CALL_ENDED = "call_ended"  # the monitored bridge went with a leg's end (or shutdown)


class MonitorAction(enum.Enum):
    STOP_SUPERVISOR_PROMPTS = "stop_supervisor_prompts"  # its prompts or music would win over the mix
    ATTACH = "attach"  # take the three legs over from the two-party bridge
    SET_MODE = "set_mode"  # what each role hears
    RELEASE = "release"  # unhook the legs, forget the monitor, silence the bus
    REJOIN = "rejoin"  # the two-party bridge carries its legs again
    HANGUP_PHONE = "hangup_phone"  # the supervisor's desk phone, when the platform rang it
    LOG = "log"  # monitor_mode with the reason, for the operator (the commander has the reply)


class MonitorError(Exception):
    pass


_MS, _MT, _MA = MonitorState, MonitorTrigger, MonitorAction
_WATCHING = {
    _MT.LISTEN: _MS.LISTENING,
    _MT.WHISPER: _MS.WHISPERING,
    _MT.BARGE: _MS.BARGING,
}
_ENDINGS: dict[MonitorTrigger, tuple[str, tuple[MonitorAction, ...]]] = {
    _MT.UNMONITOR: ("command", (_MA.RELEASE, _MA.REJOIN, _MA.LOG)),
    _MT.SUPERVISOR_ENDED: ("ended", (_MA.RELEASE, _MA.REJOIN, _MA.LOG)),
    _MT.UNBRIDGED: ("unbridged", (_MA.RELEASE, _MA.LOG)),
    # Nothing else would end a desk phone the platform rang for the supervisor once the call is over.
    _MT.CALL_ENDED: ("", (_MA.RELEASE, _MA.LOG, _MA.HANGUP_PHONE)),
}
# (state, trigger) -> (next state, event reason ("": the caller's), actions in order).
_MOVES: dict[tuple[MonitorState, MonitorTrigger], tuple[MonitorState, str, tuple[MonitorAction, ...]]] = {
    **{
        (_MS.IDLE, trigger): (state, "command", (_MA.STOP_SUPERVISOR_PROMPTS, _MA.ATTACH, _MA.LOG))
        for trigger, state in _WATCHING.items()
    },
    # A mode change; the mode it is already in changes nothing.
    **{
        (current, trigger): (state, "command", () if state is current else (_MA.SET_MODE, _MA.LOG))
        for current in _WATCHING.values()
        for trigger, state in _WATCHING.items()
    },
    **{
        (current, trigger): (_MS.ENDED, reason, actions)
        for current in _WATCHING.values()
        for trigger, (reason, actions) in _ENDINGS.items()
    },
}


@dataclass(eq=False)
class MonitorSession:
    """One supervisor's monitoring, sans-IO."""

    state: MonitorState = MonitorState.IDLE
    reason: str = "command"

    @property
    def mode(self) -> MonitorMode:
        return _MODES[self.state]

    def on(self, trigger: MonitorTrigger, reason: str = "") -> list[MonitorAction]:
        """Move on `trigger` (`reason`: the event's, where the table leaves it to the caller)."""
        move = _MOVES.get((self.state, trigger))
        if move is None:
            raise MonitorError(f"a monitor that is {self.state.value} cannot take {trigger.value}")
        log.debug("monitor_move", old=self.state.value, new=move[0].value, trigger=trigger.value)
        self.state, table_reason, actions = move
        self.reason = table_reason or reason
        return list(actions)


_MODES = {
    MonitorState.IDLE: MonitorMode.NONE,
    MonitorState.LISTENING: MonitorMode.LISTEN,
    MonitorState.WHISPERING: MonitorMode.WHISPER,
    MonitorState.BARGING: MonitorMode.BARGE,
    MonitorState.ENDED: MonitorMode.NONE,
}
_ASK = {MonitorMode.LISTEN: _MT.LISTEN, MonitorMode.WHISPER: _MT.WHISPER, MonitorMode.BARGE: _MT.BARGE}


class _Inbox:
    """Stands in for a leg's `bridge_in` deque: truthy when the bus has something for the role, and
    `popleft()` gives the mix."""

    __slots__ = ("bus", "role")

    def __init__(self, bus: MixBus, role: Role) -> None:
        self.bus = bus
        self.role = role

    def __len__(self) -> int:
        return 1 if self.bus.pending(self.role) else 0

    def popleft(self) -> Samples:
        frame = self.bus.pull(self.role)
        assert frame is not None  # the legs only pop when we said something is there
        return frame


@dataclass(eq=False)
class Monitor:
    bridge: Bridge
    caller: Endpoint
    agent: Endpoint
    supervisor: Endpoint
    bus: MixBus
    session: MonitorSession = field(default_factory=MonitorSession)
    sides: dict[Role, Endpoint] = field(default_factory=dict)

    def attach(self) -> None:
        """Take the legs over from the two-party bridge (the relay stops; every leg decodes)."""
        self.bridge.detach()
        self.sides = {Role.CALLER: self.caller, Role.AGENT: self.agent, Role.SUPERVISOR: self.supervisor}
        for role, side in self.sides.items():
            side.bridge_in = _Inbox(self.bus, role)  # type: ignore[assignment]
            side.bridge_out = self._forwarder(role, side)

    def _forwarder(self, role: Role, side: Endpoint) -> Callable[[Samples], None]:
        call_id = side.call.call_id

        def forward(samples: Samples) -> None:
            if call_id in self.bridge.muted:
                samples = np.zeros_like(samples)  # muted: nobody hears them, the recording keeps silence
            self.bus.push(role, samples)
            if role is not Role.SUPERVISOR:
                self.bridge.tap(side, samples)  # the recording stays caller + agent

        return forward

    def release(self) -> None:
        """The supervisor leaves: the three legs are unhooked from the bus."""
        for side in self.sides.values():
            side.bridge_in = None
            side.bridge_out = None

    @property
    def call_ids(self) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID]:
        return self.caller.call.call_id, self.agent.call.call_id, self.supervisor.call.call_id


class Monitors:
    """The worker's monitors by each of their three legs, and the commands."""

    def __init__(self, service: FeatureHost) -> None:
        self.service = service
        self.by_leg: dict[uuid.UUID, Monitor] = {}

    def involves(self, call_id: uuid.UUID) -> bool:
        return call_id in self.by_leg

    def is_supervisor(self, call_id: uuid.UUID) -> bool:
        monitor = self.by_leg.get(call_id)
        return monitor is not None and monitor.supervisor.call.call_id == call_id

    def handle(self, command: ev.MediaMonitor | ev.MediaUnmonitor) -> Reply | None:
        service, tenant = self.service, command.tenant_id
        supervisor = service.endpoint(tenant, command.call_id)
        if supervisor is None:
            return None  # another worker holds the supervisor's leg
        sup_id = supervisor.call.call_id
        current = self.by_leg.get(sup_id) if self.is_supervisor(sup_id) else None
        if isinstance(command, ev.MediaUnmonitor) or command.mode == "none":
            if current is None:
                return Reply(ok=False, error="this leg monitors no call", code="state")
            self._run(current, MonitorTrigger.UNMONITOR)
            return Reply(ok=True, data={"mode": "none"})
        mode = MonitorMode(command.mode)
        target_id = command.target_call_id
        if current is not None:
            if current.agent.call.call_id != target_id:
                return Reply(ok=False, error="this leg monitors another call", code="conflict")
            self._run(current, _ASK[mode])
            return Reply(ok=True, data=self._data(current))
        if target_id == sup_id:
            return Reply(ok=False, error="a leg cannot monitor itself", code="invalid")
        if supervisor.call.state is not CallState.ANSWERED:
            return Reply(ok=False, error="the supervisor's leg is not answered", code="state")
        agent = service.endpoint(tenant, target_id)
        if agent is None:
            return Reply(ok=False, error="the target is not held by this media worker", code="not_found")
        bridge = service.bridges.get(target_id)
        if bridge is None:
            return Reply(ok=False, error="the target is not bridged", code="state")
        caller = bridge.other(target_id)
        if sup_id == caller.call.call_id:
            return Reply(ok=False, error="the supervisor is on this call", code="invalid")
        if sup_id in service.bridges or self.involves(sup_id) or service.consults.involves(sup_id):
            return Reply(ok=False, error="the supervisor's leg is busy (bridged)", code="conflict")
        if self.involves(target_id) or service.consults.involves(target_id):
            return Reply(ok=False, error="the call is monitored or in a transfer already", code="conflict")
        if service.consults.involves(caller.call.call_id):
            return Reply(ok=False, error="the call is in a transfer", code="conflict")
        monitor = Monitor(bridge, caller, agent, supervisor, MixBus(mode))
        self._run(monitor, _ASK[mode])
        return Reply(ok=True, data=self._data(monitor))

    def _run(self, monitor: Monitor, trigger: MonitorTrigger, reason: str = "") -> None:
        """The session's move, carried out."""
        edge = self.service.edge
        for action in monitor.session.on(trigger, reason):
            if action is MonitorAction.STOP_SUPERVISOR_PROMPTS:
                edge.emit(monitor.supervisor.call.stop_playback("stopped", edge.now()))
            elif action is MonitorAction.ATTACH:
                monitor.attach()
                for call_id in monitor.call_ids:
                    self.by_leg[call_id] = monitor
            elif action is MonitorAction.SET_MODE:
                monitor.bus.set_mode(monitor.session.mode)
            elif action is MonitorAction.RELEASE:
                for call_id in monitor.call_ids:
                    if self.by_leg.get(call_id) is monitor:
                        del self.by_leg[call_id]
                monitor.release()
                monitor.bus.set_mode(MonitorMode.NONE)
            elif action is MonitorAction.REJOIN:
                monitor.bridge.join()
            elif action is MonitorAction.LOG:
                self._log(monitor, monitor.session.reason)
            elif action is MonitorAction.HANGUP_PHONE:
                phone = edge.legs.get(monitor.supervisor.call.call_id)
                if phone is not None and phone.outbound:
                    # After the separation completes (this runs inside it).
                    asyncio.get_running_loop().call_soon(edge.hangup, phone, "monitored_call_ended")

    # --- hooks (MediaService) ---

    def bridge_separating(self, bridge: Bridge, reason: str) -> None:
        """The monitored bridge is being separated (unbridge, a leg's end, shutdown): the monitor ends
        with it; the supervisor's leg stays up, unbridged, except a desk phone the platform rang for it
        (an outbound SIP leg), which is hung up once the call itself is over: nothing else would end it."""
        for call_id in bridge.call_ids:
            monitor = self.by_leg.get(call_id)
            if monitor is not None and monitor.bridge is bridge:
                if reason == "unbridge":
                    self._run(monitor, MonitorTrigger.UNBRIDGED)
                else:
                    self._run(monitor, MonitorTrigger.CALL_ENDED, reason)
                return

    def leg_ended(self, call_id: uuid.UUID) -> None:
        """The supervisor's leg ended: the bridge goes back to two parties."""
        monitor = self.by_leg.get(call_id)
        if monitor is not None and monitor.supervisor.call.call_id == call_id:
            self._run(monitor, MonitorTrigger.SUPERVISOR_ENDED)

    @staticmethod
    def _log(monitor: Monitor, reason: str) -> None:
        """A supervisor joined, changed mode on, or left ("none") a bridge. The one who commanded it has the
        reply; why a supervisor left (command, ended: a leg ended, unbridged) is for the operator's log."""
        caller_id, agent_id, sup_id = monitor.call_ids
        log.info(
            "monitor_mode",
            supervisor=str(sup_id),
            agent=str(agent_id),
            caller=str(caller_id),
            mode=monitor.bus.mode.value,
            reason=reason,
        )

    @staticmethod
    def _data(monitor: Monitor) -> dict[str, object]:
        return {"mode": monitor.bus.mode.value, "caller_call_id": str(monitor.call_ids[0])}

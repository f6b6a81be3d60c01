"""A media process's loss, wherever it is noticed (docs/media.md, "Sharding" and "A lost media process").

Behind a SIP front, the front notices a worker's death (its link socket closes, or its registration goes
stale) and ends its calls. A media process without a front (`--media-workers 1`, or one per host) has no
one holding a link to it: it keeps the same registration in the KV bucket `sb_media_workers` with
`link_port` 0, and `StandaloneWatch` (sans-IO; the contacts coordinator runs it, services/contacts/
media_watch.py) declares it lost when that registration goes stale (killed, hung) or a new incarnation
replaces it (restarted under the same id). Either way `publish_lost` ends each of its calls with
`call.ended` (cause `media_worker_lost`, an id derived from the call so a second publisher is
de-duplicated) and publishes MediaWorkerLost, which fences the process if it was only hung.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass, field

import msgspec

from services.kernel.bus import Bus
from services.kernel.events import CallEnded, MediaWorkerLost, MediaWorkerRegistration
from services.kernel.log import get_logger
from services.media.front.dispatch import LossReason, Reply, WorkerLost

__all__ = ["LOST_CAUSE", "LOST_SUBJECT", "StandaloneWatch", "ended_event", "publish_lost"]

log = get_logger()

LOST_CAUSE = "media_worker_lost"
LOST_SUBJECT = "sb.sys.media.worker_lost"  # MediaWorkerLost (platform record, not a tenant event)
_LOST_NS = uuid.UUID("6f1d3c2a-8a55-4d8e-9a43-2b1f3e5c7d90")


def ended_event(lost: WorkerLost, call_index: int, now_wall: float) -> CallEnded:
    """The call ended when its worker was last known alive (its last registration, at most a second or so
    before a kill; much earlier when a front restarted after the whole platform died), never later."""
    call = lost.calls[call_index]
    end = min(now_wall, lost.last_alive) if lost.last_alive > 0 else now_wall
    duration = round(max(0.0, end - call.answered_at), 3) if call.answered_at is not None else 0.0
    return CallEnded(
        id=uuid.uuid5(_LOST_NS, f"{call.call_id}:{LOST_CAUSE}"),
        ts=end,
        tenant_id=call.tenant_id,
        call_id=call.call_id,
        cause=LOST_CAUSE,
        duration=duration,
    )


async def publish_lost(bus: Bus, lost: WorkerLost) -> None:
    """call.ended for each of the lost process's calls, then the MediaWorkerLost record."""
    now_wall = time.time()
    events = [ended_event(lost, i, now_wall) for i in range(len(lost.calls))]
    results = await asyncio.gather(*(bus.publish(e) for e in events), return_exceptions=True)
    for event, result in zip(events, results, strict=True):
        if isinstance(result, BaseException):
            log.warning("call_ended_not_published", call_id=str(event.call_id), error=str(result))
    record = MediaWorkerLost(
        id=uuid.uuid4(),
        ts=now_wall,
        worker_id=lost.worker_id,
        site=lost.site,
        reason=lost.reason.value,
        calls_ended=len(events),
        pid=lost.pid,
    )
    with contextlib.suppress(Exception):
        await bus.nc.publish(LOST_SUBJECT, msgspec.json.encode(record))


Incarnation = tuple[str, int, float]  # worker id, pid, started_at


def _incarnation(reg: MediaWorkerRegistration) -> Incarnation:
    return (reg.worker_id, reg.pid, reg.started_at)


@dataclass
class StandaloneWatch:
    """Media processes without a front (registrations with `link_port` 0), by their registrations alone."""

    stale_after: float = 5.0  # a registration this old (refreshed every second) means the process is gone
    forget_after: float = 300.0  # how long a lost incarnation's late registrations are ignored
    workers: dict[str, tuple[MediaWorkerRegistration, float]] = field(default_factory=dict)  # reg, seen at
    _gone: dict[Incarnation, float] = field(default_factory=dict)
    _last_tick: float | None = None

    def registered(self, reg: MediaWorkerRegistration, now: float, age: float = 0.0) -> list[WorkerLost]:
        """A registration put into the bucket (`age`: how old it already is, by its own timestamp)."""
        if reg.link_port != 0 or _incarnation(reg) in self._gone:
            return []  # behind a front (the front watches it), or a late put of a lost incarnation
        lost: list[WorkerLost] = []
        known = self.workers.get(reg.worker_id)
        seen_at = now - max(0.0, age)
        if known is not None and _incarnation(known[0]) != _incarnation(reg):
            # Restarted under the same id (the supervisor's restart after a kill -9): the old one's calls
            # died with it.
            lost.append(self._lose(known[0], LossReason.LINK_CLOSED, now))
            known = None
        self.workers[reg.worker_id] = (reg, seen_at if known is None else max(known[1], seen_at))
        return lost

    def unregistered(self, worker_id: str, now: float) -> None:
        """Its key was deleted: a clean stop (the process ended its own calls first)."""
        known = self.workers.pop(worker_id, None)
        if known is not None:
            self._gone[_incarnation(known[0])] = now

    def tick(self, now: float, *, feed_ok: bool = True) -> list[WorkerLost]:
        """Stale registrations are lost. When the registrations cannot be received (`feed_ok` False) or
        the watcher itself was stalled since the last tick, silence proves nothing: a fresh grace instead."""
        stalled = self._last_tick is not None and now - self._last_tick > self.stale_after / 2
        self._last_tick = now
        if stalled or not feed_ok:
            self.workers = {k: (reg, max(seen, now)) for k, (reg, seen) in self.workers.items()}
        lost = [
            self._lose(reg, LossReason.REGISTRATION_EXPIRED, now)
            for reg, seen in list(self.workers.values())
            if now - seen > self.stale_after
        ]
        self._gone = {k: at for k, at in self._gone.items() if now - at <= self.forget_after}
        return lost

    def _lose(self, reg: MediaWorkerRegistration, reason: LossReason, now: float) -> WorkerLost:
        self.workers.pop(reg.worker_id, None)
        self._gone[_incarnation(reg)] = now
        # Its answered SIP callers get the BYE it left in its registration: nothing else holds their dialogs.
        byes = tuple(
            Reply(c.lost_bye_to, c.lost_bye.encode())
            for c in reg.calls
            if c.lost_bye and c.lost_bye_to is not None and c.lost_bye_to[0] == "udp"
        )
        return WorkerLost(
            reg.worker_id, reg.site, reason, tuple(reg.calls), reg.pid, byes=byes, last_alive=reg.ts
        )

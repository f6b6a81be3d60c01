"""StandaloneWatch (services/media/front/loss.py): a media process without a SIP front is lost when its
registration goes stale or a new incarnation replaces it; a clean stop, a process behind a front, a late
registration of a lost incarnation and a stalled watcher are not losses."""

from __future__ import annotations

import uuid

from services.kernel.events import MediaWorkerCall, MediaWorkerRegistration
from services.media.front.dispatch import LossReason
from services.media.front.loss import StandaloneWatch, ended_event

T0 = 1000.0
TENANT = uuid.UUID(int=1)
CALL = MediaWorkerCall(tenant_id=TENANT, call_id=uuid.UUID(int=2), sip_call_id="c1", answered_at=50.0)


def _reg(
    pid: int = 10, *, link_port: int = 0, ts: float = 60.0, calls: bool = True
) -> MediaWorkerRegistration:
    return MediaWorkerRegistration(
        worker_id="alone-h-5060",
        site="default",
        link_host="127.0.0.1",
        link_port=link_port,
        capacity=100,
        active_calls=1 if calls else 0,
        calls=[CALL] if calls else [],
        pid=pid,
        started_at=float(pid),
        ts=ts,
    )


def _ticks(watch: StandaloneWatch, start: float, end: float) -> list:
    lost, now = [], start
    while now <= end:
        lost += watch.tick(now)
        now += 0.5
    return lost


def test_a_stale_registration_is_a_loss_of_its_calls_ended_at_its_last_sign_of_life() -> None:
    watch = StandaloneWatch(stale_after=5.0)
    assert watch.registered(_reg(), T0) == []
    assert _ticks(watch, T0, T0 + 5.0) == []
    [lost] = _ticks(watch, T0 + 5.5, T0 + 6.0)
    assert lost.reason is LossReason.REGISTRATION_EXPIRED and lost.calls == (CALL,) and lost.pid == 10
    event = ended_event(lost, 0, now_wall=99.0)
    assert event.cause == "media_worker_lost" and event.ts == 60.0 and event.duration == 10.0
    # Its late registration (it was only hung) is not taken back: it fences itself on MediaWorkerLost.
    assert watch.registered(_reg(), T0 + 7.0) == [] and not watch.workers


def test_a_restart_under_the_same_id_loses_the_old_incarnation_at_once() -> None:
    watch = StandaloneWatch()
    watch.registered(_reg(pid=10), T0)
    [lost] = watch.registered(_reg(pid=11, calls=False), T0 + 1.0)
    assert lost.reason is LossReason.LINK_CLOSED and lost.pid == 10 and lost.calls == (CALL,)
    assert _ticks(watch, T0 + 1.0, T0 + 3.0) == []  # the new one is alive


def test_clean_stops_and_processes_behind_a_front_are_not_losses() -> None:
    watch = StandaloneWatch()
    watch.registered(_reg(), T0)
    watch.unregistered("alone-h-5060", T0 + 1.0)
    assert watch.registered(_reg(link_port=4000), T0 + 1.0) == []  # the front watches this one
    assert _ticks(watch, T0, T0 + 30.0) == []


def test_a_stalled_watcher_or_a_lost_feed_proves_nothing() -> None:
    watch = StandaloneWatch(stale_after=5.0)
    watch.registered(_reg(), T0)
    watch.tick(T0)
    assert watch.tick(T0 + 20.0) == []  # the watcher itself did not run for 20 s: a fresh grace
    assert watch.tick(T0 + 40.0, feed_ok=False) == []
    assert _ticks(watch, T0 + 40.5, T0 + 45.0) == []
    assert len(_ticks(watch, T0 + 45.5, T0 + 46.0)) == 1

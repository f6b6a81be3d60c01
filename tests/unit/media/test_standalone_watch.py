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


def test_a_lost_process_hands_over_the_byes_it_left_for_its_answered_udp_callers() -> None:
    """Nothing else holds a lone process's dialogs: the BYEs in its last registration go out on its loss
    (UDP only: a TCP caller's connection died with the process)."""
    bye = "BYE sip:sipp@127.0.0.1:5099 SIP/2.0\r\nCall-ID: c1\r\n\r\n"
    udp = MediaWorkerCall(
        tenant_id=TENANT, call_id=uuid.UUID(int=3), sip_call_id="c1", answered_at=50.0,
        lost_bye=bye, lost_bye_to=("udp", "127.0.0.1", 5099),
    )  # fmt: skip
    tcp = MediaWorkerCall(
        tenant_id=TENANT, call_id=uuid.UUID(int=4), sip_call_id="c2", answered_at=50.0,
        lost_bye="BYE ...", lost_bye_to=("tcp", "127.0.0.1", 5098),
    )  # fmt: skip
    reg = MediaWorkerRegistration(
        worker_id="alone-h-5060", site="default", link_host="127.0.0.1", link_port=0, capacity=100,
        active_calls=3, calls=[CALL, udp, tcp], pid=10, started_at=10.0, ts=60.0,
    )  # fmt: skip
    watch = StandaloneWatch(stale_after=5.0)
    watch.registered(reg, T0)
    [lost] = _ticks(watch, T0, T0 + 6.0)
    assert [(b.peer, b.data) for b in lost.byes] == [(("udp", "127.0.0.1", 5099), bye.encode())]
    assert len(lost.calls) == 3  # every call still ends, with or without a BYE

"""The API's sans-IO cores, with time passed in: seat usage integration and the sliding-window limiter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.api.health import assess_services
from services.api.ratelimit import SlidingWindow
from services.api.usage import integrate
from services.kernel.service import Health

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def h(n: float) -> datetime:
    return T0 + timedelta(hours=n)


def test_integrate_counts_only_the_period_and_only_after_the_first_entry() -> None:
    ledger = [(h(0), 2), (h(10), 5), (h(30), 1)]
    spans = [(iv.start, iv.end, iv.seats) for iv in integrate(ledger, h(-5), h(40))]
    assert spans == [(h(0), h(10), 2), (h(10), h(30), 5), (h(30), h(40), 1)]
    assert sum(iv.seats * iv.seconds for iv in integrate(ledger, h(5), h(12))) == (5 * 2 + 2 * 5) * 3600
    # A period entirely before the tenant existed, or empty, counts nothing.
    assert integrate(ledger, h(-10), h(-1)) == []
    assert integrate(ledger, h(5), h(5)) == []
    # A change exactly at the start applies from the start.
    assert [(iv.seats, iv.seconds) for iv in integrate(ledger, h(10), h(11))] == [(5, 3600)]


def test_integrate_merges_equal_neighbours_and_handles_same_instant_changes() -> None:
    ledger = [(h(0), 2), (h(1), 3), (h(2), 2), (h(2), 2), (h(3), 4), (h(3), 6)]
    spans = [(iv.start, iv.end, iv.seats) for iv in integrate(ledger, h(0), h(4))]
    assert spans == [(h(0), h(1), 2), (h(1), h(2), 3), (h(2), h(3), 2), (h(3), h(4), 6)]
    zero = [(h(0), 2), (h(1), 0), (h(2), 1)]
    assert [iv.seats for iv in integrate(zero, h(0), h(3))] == [2, 0, 1]


def test_sliding_window_allows_limit_per_window_per_key() -> None:
    w = SlidingWindow(3, window_s=60)
    assert [w.allow("a", t)[0] for t in (0, 1, 2, 3)] == [True, True, True, False]
    allowed, retry = w.allow("a", 30)
    assert not allowed and retry == 30
    assert w.allow("b", 30)[0]  # keys are independent
    assert w.allow("a", 60.5)[0]  # the first hit has left the window
    assert not w.allow("a", 60.6)[0]


def test_sliding_window_memory_is_bounded() -> None:
    w = SlidingWindow(1, window_s=60, max_keys=100)
    for i in range(1000):
        w.allow(f"k{i}", float(i))
    assert len(w._hits) <= 100


def test_assess_services_uses_the_newest_beat_per_service() -> None:
    now = 1000.0

    def beat(service: str, ts: float, pid: int = 1) -> Health:
        return Health(service=service, pid=pid, host="h", status="ok", started_at=0, ts=ts)

    beats = [
        beat("media", now - 30, pid=1),
        beat("media", now - 2, pid=2),
        beat("routing", now - 16),
        beat("extra", now - 1),
    ]
    out = assess_services(beats, now, ("media", "routing", "ivr"))
    assert (out["media"].status, out["media"].pid, out["media"].age_s, out["media"].instances) == (
        "ok",
        2,
        2.0,
        1,
    )
    assert out["routing"].status == "down" and out["routing"].age_s == 16.0
    assert out["ivr"].status == "down" and out["ivr"].pid is None
    assert out["extra"].status == "ok"

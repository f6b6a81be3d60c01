"""Queue alerts (services/reporting/alerts.py): thresholds in force and what a realtime row crosses."""

from __future__ import annotations

from typing import Any

from services.reporting.alerts import Policy, evaluate, resolve


def _row(**over: Any) -> dict[str, Any]:
    row = {
        "waiting": 2, "longest_wait_s": 25.0, "service_level": 0.75, "sl_seconds": 20, "sl_target": 0.8,
        "agents": {"available": 1, "on_contact": 1, "away": 2, "logged_out": 5},
    }  # fmt: skip
    return row | over


def test_unset_thresholds_follow_the_queue_and_watch_no_more() -> None:
    t = resolve(_row(), Policy())
    assert t == {"longest_wait_s": 20.0, "service_level_below": 0.8, "waiting_over": None, "away_over": None}
    assert [a.kind for a in evaluate(_row(), t)] == ["longest_wait", "service_level"]
    assert evaluate(_row(longest_wait_s=20.0, service_level=0.8), t) == []  # at the threshold: not over
    assert evaluate(_row(waiting=0, longest_wait_s=99.0, service_level=None), t) == []  # nobody waiting


def test_every_threshold_of_a_policy() -> None:
    p = Policy(longest_wait_seconds=60, service_level_below_percent=50, waiting_over=1, away_over_percent=40)
    t = resolve(_row(), p)
    alerts = {a.kind: a for a in evaluate(_row(), t)}
    assert set(alerts) == {"waiting", "away"}  # 25 s < 60 s, 75 % > 50 %
    assert alerts["away"].value == 0.5 and alerts["away"].threshold == 0.4  # logged-out agents not counted
    assert "2 callers waiting" in alerts["waiting"].message
    assert evaluate(_row(agents={}), t)[0].kind == "waiting"  # no agent signed in: no away share


def test_the_book_announces_each_alert_once_and_wakes_when_a_wait_will_cross() -> None:
    from services.reporting.alerts import AlertBook

    book = AlertBook()
    thresholds = resolve(_row(), Policy(waiting_over=2, longest_wait_seconds=30))
    row = _row(queue_id="q", queue_name="Support", service_level=None, thresholds=thresholds)
    changes, wake = book.update([row], now=100.0)
    assert changes == [] and wake == 100.0 + 5.0 + 0.05  # 25 s waited of 30: crossed in 5 s
    changes, _ = book.update([row | {"waiting": 3, "longest_wait_s": 31.0}], now=106.0)
    assert [(c.kind, c.alert is not None) for c in changes] == [("longest_wait", True), ("waiting", True)]
    changes, wake = book.update([row | {"waiting": 3, "longest_wait_s": 32.0}], now=107.0)
    assert changes == [] and wake is None  # already raised: not again; crossed: no wake needed
    changes, _ = book.update([row | {"waiting": 0, "longest_wait_s": 0.0}], now=108.0)
    assert sorted((c.kind, c.alert) for c in changes) == [("longest_wait", None), ("waiting", None)]
    book.update([row | {"waiting": 3, "longest_wait_s": 31.0}], now=109.0)
    changes, _ = book.update([], now=110.0)  # the queue was removed: its alerts end
    assert {c.kind for c in changes} == {"longest_wait", "waiting"} and book.raised == {}

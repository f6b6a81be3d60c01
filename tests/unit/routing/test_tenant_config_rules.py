"""A queue row's rules as the routing core's QueueConfig (services/routing/tenant_config.py): hours in the
tenant's time zone, holidays, overflow targets that no longer exist left out, closed target, priority rules."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from zoneinfo import ZoneInfo

from services.routing.core.model import Strategy, TenantConfig, validate_config
from services.routing.core.schedule import is_open
from services.routing.tenant_config import _queue

SUPPORT, BILLING, GONE = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()


def row(**rules: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": SUPPORT, "skills": "{}", "wrap_up_seconds": 0, "offer_timeout_seconds": 20, "site_id": None,
        "strategy": "longest_idle", "overflow": "[]", "hours": None, "holidays": [],
        "closed_treatment": "message", "closed_queue_id": None, "priority_rules": "[]",
        "spill_after_seconds": None, "spill_expected_wait_seconds": None, "priority": 50,
    }  # fmt: skip
    return base | rules


def at(local: str, tz: str) -> float:
    return dt.datetime.fromisoformat(local).replace(tzinfo=ZoneInfo(tz)).timestamp()


def test_rules_become_the_cores_queue_config() -> None:
    overflow = [
        {"target_queue_id": str(BILLING), "after_seconds": 60, "expected_wait_over_seconds": None},
        {"target_queue_id": str(GONE), "after_seconds": 5},  # deleted since: left out
    ]
    q = _queue(
        row(
            strategy="most_skilled",
            overflow=json.dumps(overflow),
            hours=json.dumps({"mon": ["09:00-17:00"]}),
            holidays=[dt.date(2026, 12, 28)],
            closed_treatment="queue",
            closed_queue_id=BILLING,
            priority_rules=json.dumps([{"attribute": "vip", "equals": "true", "raise_by": 30}]),
            spill_after_seconds=30,
        ),
        "Europe/Paris",
        {str(SUPPORT), str(BILLING)},
    )
    assert q.strategy is Strategy.MOST_SKILLED and q.site_spill_after_s == 30
    assert [(r.target_queue_id, r.after_s) for r in q.overflow] == [(str(BILLING), 60)]
    assert q.closed_target_queue_id == str(BILLING) and q.priority_rules[0].raise_by == 30
    assert _queue(row(priority=80), "UTC", {str(SUPPORT)}).default_priority == 80
    assert q.schedule is not None and q.schedule.tz == "Europe/Paris"
    # Monday 2026-12-21 at 08:30 and 09:30 in Paris (07:30 and 08:30 UTC); Monday 28th is a holiday.
    assert not is_open(q.schedule, at("2026-12-21T08:30", "Europe/Paris"))
    assert is_open(q.schedule, at("2026-12-21T09:30", "Europe/Paris"))
    assert not is_open(q.schedule, at("2026-12-28T10:00", "Europe/Paris"))
    assert validate_config(TenantConfig(queues=[q, _queue(row(id=BILLING), "UTC", set())])) is None


def test_holidays_without_hours_close_only_those_days() -> None:
    q = _queue(row(holidays=[dt.date(2026, 12, 25)]), "America/New_York", {str(SUPPORT)})
    assert not is_open(q.schedule, at("2026-12-25T23:30", "America/New_York"))
    assert is_open(q.schedule, at("2026-12-26T00:30", "America/New_York"))  # 05:30 UTC on the 26th
    assert _queue(row(), "UTC", set()).schedule is None
    never = _queue(row(hours="{}"), "UTC", set()).schedule
    assert never is not None and not is_open(never, at("2026-12-21T12:00", "UTC"))


def test_a_closed_treatment_queue_without_its_queue_is_a_message() -> None:
    q = _queue(row(closed_treatment="queue", closed_queue_id=None), "UTC", {str(SUPPORT)})
    assert q.closed_target_queue_id is None

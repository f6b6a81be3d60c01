"""`--since WHEN` and `--endpoint` parsing in the CLI: pure functions, a fixed clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from switchboard_cli.contacts import parse_when
from switchboard_cli.parsing import parse_endpoint

NOW = datetime(2026, 11, 23, 17, 45, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", NOW - timedelta(minutes=30)),
        (" 2h ", NOW - timedelta(hours=2)),
        ("1d", NOW - timedelta(days=1)),
        ("90s", NOW - timedelta(seconds=90)),
        ("2W", NOW - timedelta(weeks=2)),
        ("2026-11-01", datetime(2026, 11, 1, tzinfo=UTC)),
        ("2026-11-01T09:00Z", datetime(2026, 11, 1, 9, tzinfo=UTC)),
        ("2026-11-01T09:00+02:00", datetime(2026, 11, 1, 7, tzinfo=UTC)),
    ],
)
def test_when(text: str, expected: datetime) -> None:
    assert parse_when(text, NOW) == expected


def test_today_is_local_midnight() -> None:
    today = parse_when("today", NOW)
    local = NOW.astimezone()
    assert today.tzinfo is not None and today <= NOW
    assert (today.hour, today.minute, today.second) == (0, 0, 0) and today.date() == local.date()
    assert parse_when("TODAY", datetime(2026, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=5)))).tzinfo


@pytest.mark.parametrize("text", ["yesterday", "5x", "-2h", "2026-13-01", "", "1.5h"])
def test_bad_when(text: str) -> None:
    with pytest.raises(ValueError, match="expected a time"):
        parse_when(text, NOW)


def test_endpoint() -> None:
    assert parse_endpoint(" sip:ann@pbx.example.com ") == "sip:ann@pbx.example.com"
    assert parse_endpoint("SIPS:ann@10.0.0.1:5061") == "SIPS:ann@10.0.0.1:5061"  # the API lower-cases it
    assert parse_endpoint("+1 (555) 0199") == "+15550199"
    for bad in ("tel:+15550100", "sip:", "ann@pbx", "+0123"):
        with pytest.raises(ValueError):
            parse_endpoint(bad)

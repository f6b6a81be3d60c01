"""Reports' request handling without a database (tests/unit/api/harness.py): ranges, intervals' companions
and planning inputs are checked before any read. The figures against PostgreSQL:
tests/integration/reporting/test_reporting_api.py and test_reporting_planning.py."""

from __future__ import annotations

import pytest

from services.api.reports import ExportController, ReportController

from .harness import harness, problem

QUEUE = "00000000-0000-0000-0000-000000000001"


@pytest.mark.parametrize("kind", ["queues", "agents", "ivr", "sites"])
@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z", "to"),
        ("from=2024-01-01T00:00:00Z&to=2026-01-01T00:00:00Z", "from"),
        ("from=monday", "from: "),  # the name the client sent, not the handler's (start)
        ("interval=" + "x" * 9, "interval"),
    ],
)
def test_a_bad_report_range_is_refused_before_a_read(kind: str, query: str, field: str) -> None:
    with harness(ReportController) as h:
        assert field in str(problem(h.client.get(f"/v1/reports/{kind}?{query}"), 422))


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("target=80", "target"),
        ("target=100/20", "target"),
        ("target=80/3601", "target"),
        ("days=0", "days"),
        ("shrinkage=100", "shrinkage"),
        ("weeks=0", "weeks"),
    ],
)
def test_a_bad_forecast_is_refused_before_a_read(query: str, field: str) -> None:
    with harness(ReportController) as h:
        assert field in str(problem(h.client.get(f"/v1/reports/forecast?queue={QUEUE}&{query}"), 422))


def test_a_bad_first_day_is_named_as_sent() -> None:
    with harness(ReportController) as h:
        answer = problem(h.client.get(f"/v1/reports/forecast?queue={QUEUE}&from=2026-13-01"), 422)
        assert answer["detail"].startswith("from: ") and answer["errors"][0]["field"] == "from"


def test_a_forecast_names_its_queue() -> None:
    with harness(ReportController) as h:
        assert "queue" in str(problem(h.client.get("/v1/reports/forecast"), 422))


@pytest.mark.parametrize("agents", ["ten", "10,x", "1.5"])
def test_a_replay_takes_whole_agent_counts(agents: str) -> None:
    with harness(ReportController) as h:
        answer = problem(h.client.get(f"/v1/reports/replay?queue={QUEUE}&agents={agents}"), 422)
        assert "agents" in str(answer)


def test_an_export_range_is_checked_before_a_read() -> None:
    with harness(ExportController) as h:
        problem(
            h.client.get("/v1/exports/contacts.csv?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z"), 422
        )
        problem(
            h.client.get("/v1/exports/contacts.csv?from=2020-01-01T00:00:00Z&to=2026-01-01T00:00:00Z"), 422
        )

"""Queue rules and site drain through the CLI, the SDK and the API (the real API server and database):
what is stored, how it reads back, and every bad input refused with the field named (422 problem JSON; a
one-line CLI error and a non-zero exit). Calls routed by these rules: tests/e2e/first_call/test_queue_rules.py."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import switchboard
from click.testing import CliRunner, Result
from switchboard_cli.main import cli


@pytest.fixture
def tenant(api_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for name in ("SB_API_URL", "SB_API_KEY", "SB_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    tag = uuid.uuid4().hex[:8]
    with httpx.Client(base_url=api_server, timeout=10) as client:
        r = client.post("/v1/signup", json={"company": f"Rules {tag}", "email": f"r-{tag}@example.com"})
        assert r.status_code == 201, r.text
    key = r.json()["api_key"]["key"]
    monkeypatch.setenv("SB_API_URL", api_server)
    monkeypatch.setenv("SB_API_KEY", key)
    return {"api": api_server, "key": key}


def run(*args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == code, (args, result.exit_code, result.stdout, result.stderr)
    if code:
        assert (result.stdout == "" and result.stderr.startswith("error: ")) or "Error:" in result.stderr, (
            result.stderr
        )
    return result


def test_rules_set_by_the_cli_read_back_everywhere(tenant: dict[str, Any]) -> None:
    for name in ("Support", "Billing", "Night"):
        run("queues", "create", name)
    run("sites", "add", "Paris", "--timezone", "Europe/Paris")
    out = run(
        "queues", "update", "Support", "--strategy", "most-skilled",
        "--overflow", "after 60s to Billing", "--overflow", "wait over 2m to Night",
        "--hours", "mon-fri 09:00-17:00", "--hours", "sat 10:00-12:00,14:00-16:00",
        "--holiday", "2026-12-25", "--holiday", "2027-01-01", "--closed", "queue Night",
        "--priority-rule", "vip=true:+30", "--priority-rule", "caller=+15550177:+10",
        "--site", "Paris", "--spill-after", "30s", "--spill-wait", "1m", "--announce", "45s",
    ).stdout  # fmt: skip
    assert "most-skilled" in out and "after 1m to Billing" in out and "wait over 2m to Night" in out, out
    assert "mon 09:00-17:00" in out and "sat 10:00-12:00, 14:00-16:00" in out and "2026-12-25" in out

    with switchboard.Client(api_key=tenant["key"], base_url=tenant["api"]) as client:
        queues = {q.name: q for q in client.queues.iter()}
        q = queues["Support"]
        assert q.strategy == "most_skilled" and q.announce_seconds == 45
        assert q.overflow == [
            {
                "target_queue_id": queues["Billing"].id,
                "after_seconds": 60,
                "expected_wait_over_seconds": None,
            },
            {"target_queue_id": queues["Night"].id, "after_seconds": None, "expected_wait_over_seconds": 120},
        ]
        assert q.hours == {d: ["09:00-17:00"] for d in ("mon", "tue", "wed", "thu", "fri")} | {
            "sat": ["10:00-12:00", "14:00-16:00"]
        }
        assert [d.isoformat() for d in q.holidays] == ["2026-12-25", "2027-01-01"]
        assert q.closed_treatment == "queue" and q.closed_queue_id == queues["Night"].id
        assert q.priority_rules == [
            {"attribute": "vip", "equals": "true", "raise_by": 30},
            {"attribute": "caller", "equals": "+15550177", "raise_by": 10},
        ]
        assert (q.spill_after_seconds, q.spill_expected_wait_seconds) == (30, 60)

        # The SDK changes only what it is given; `none`/None clear.
        q = client.queues.set_rules(q.id, strategy="round_robin", hours=None, announce_seconds=None)
        assert q.strategy == "round_robin" and q.hours is None and q.announce_seconds is None
        assert len(q.overflow) == 2 and q.closed_queue_id == queues["Night"].id

        # Deleting an overflow target takes the rules to it with it; a closed target is cleared.
        client.queues.delete(queues["Night"].id)
        q = client.queues.get(q.id)
        assert [r["target_queue_id"] for r in q.overflow] == [queues["Billing"].id]
        assert q.closed_queue_id is None

    run("queues", "update", "Support", "--overflow", "none", "--priority-rule", "none", "--holiday", "none")
    shown = json.loads(run("queues", "show", "Support", "--json").stdout)
    assert shown["overflow"] == [] and shown["priority_rules"] == [] and shown["holidays"] == []
    human = run("queues", "show", "Support").stdout
    assert "round-robin" in human and "announcements" in human and "off" in human

    # The tenant's time zone (queue hours) and callers' language.
    out = run("settings", "set", "--timezone", "Europe/Paris", "--language", "fr").stdout
    assert "Europe/Paris" in out and "fr" in out
    bad = CliRunner().invoke(cli, ["settings", "set", "--timezone", "Mars/Olympus"], catch_exceptions=False)
    assert bad.exit_code != 0 and "timezone" in bad.stderr, bad.stderr

    # Drain and restore a site, idempotent, shown on the site.
    assert "Drained site Paris" in run("sites", "drain", "Paris").stdout
    site = json.loads(run("sites", "drain", "Paris", "--json").stdout)
    assert site["drained_at"] is not None
    site = json.loads(run("sites", "restore", "Paris", "--json").stdout)
    assert site["drained_at"] is None


BAD_CLI = [
    (("--overflow", "after soon to Billing"), "not a duration"),
    (("--overflow", "to Billing"), "after 60s to QUEUE"),
    (("--overflow", "after 60s to Nowhere"), "no queue named 'Nowhere'"),
    (("--hours", "mon-fri 9-17"), "DAYS HH:MM-HH:MM"),
    (("--hours", "fri-mon 09:00-17:00"), "goes forward"),
    (("--hours", "mon 17:00-09:00"), "start must be before end"),
    (("--holiday", "2026-13-01"), "not a date"),
    (("--priority-rule", "vip"), "ATTRIBUTE=VALUE:+POINTS"),
    (("--closed", "voicemail"), "'message'"),
    (("--closed", "flow nowhere"), "no flow named 'nowhere'"),
    (("--strategy", "fastest"), "fastest"),
    (("--overflow", "none", "--overflow", "after 1s to Billing"), "give it alone"),
]


def test_cli_refuses_bad_rules_with_one_line(tenant: dict[str, Any]) -> None:
    run("queues", "create", "Support")
    run("queues", "create", "Billing")
    before = run("queues", "show", "Support", "--json").stdout
    for args, message in BAD_CLI:
        result = CliRunner().invoke(cli, ["queues", "update", "Support", *args], catch_exceptions=False)
        assert result.exit_code != 0 and result.stdout == "", (args, result.stdout, result.stderr)
        assert message in result.stderr, (args, result.stderr)
    assert run("queues", "show", "Support", "--json").stdout == before


def test_api_refuses_bad_rules_naming_the_field(tenant: dict[str, Any]) -> None:
    headers = {"Authorization": f"Bearer {tenant['key']}"}
    with httpx.Client(base_url=tenant["api"], headers=headers, timeout=10) as client:
        support = client.post("/v1/queues", json={"name": "Support"}).json()["id"]
        billing = client.post("/v1/queues", json={"name": "Billing"}).json()["id"]
        cases: list[tuple[dict[str, Any], str, str]] = [
            ({"strategy": "fastest"}, "strategy", "fastest"),
            ({"overflow": [{"target_queue_id": billing}]}, "overflow[0]", "after_seconds"),
            ({"overflow": [{"target_queue_id": str(uuid.uuid4()), "after_seconds": 5}]}, "overflow[0].target_queue_id", "no queue"),
            ({"overflow": [{"target_queue_id": support, "after_seconds": 5}]}, "overflow[0].target_queue_id", "itself"),
            ({"overflow": [{"target_queue_id": billing, "after_seconds": -1}]}, "after_seconds", ">= 0"),
            ({"hours": {"monday": ["09:00-17:00"]}}, "hours.monday", "weekdays"),
            ({"hours": {"mon": ["9-17"]}}, "hours.mon[0]", "HH:MM-HH:MM"),
            ({"hours": {"mon": ["18:00-09:00"]}}, "hours.mon[0]", "start must be before end"),
            ({"hours": {"mon": ["09:00-25:00"]}}, "hours.mon[0]", "HH:MM"),
            ({"holidays": ["2026-02-30"]}, "holidays", "date"),
            ({"closed_treatment": "queue"}, "closed_queue_id", "needs the queue"),
            ({"closed_treatment": "voicemail"}, "closed_treatment", "voicemail"),
            ({"closed_treatment": "flow"}, "closed_flow_id", "needs the flow"),
            ({"closed_treatment": "flow", "closed_flow_id": str(uuid.uuid4())}, "closed_flow_id", "no flow"),
            ({"closed_message": ""}, "closed_message", "empty"),
            ({"priority_rules": [{"attribute": "v i p", "equals": "x", "raise_by": 5}]}, "priority_rules[0].attribute", "letters"),
            ({"priority_rules": [{"attribute": "vip", "equals": "x", "raise_by": 500}]}, "raise_by", "<= 98"),
            ({"announce_seconds": 1}, "announce_seconds", ">= 5"),
            ({"spill_after_seconds": -5}, "spill_after_seconds", ">= 0"),
        ]  # fmt: skip
        before = client.get(f"/v1/queues/{support}").json()
        for body, field, words in cases:
            r = client.patch(f"/v1/queues/{support}", json=body)
            assert r.status_code in (400, 422), (body, r.status_code, r.text)
            problem = r.json()
            assert r.headers["content-type"].startswith("application/problem+json")
            assert field in json.dumps(problem) and words in json.dumps(problem), (body, problem)
        # Nothing was changed by any refusal.
        after = client.get(f"/v1/queues/{support}").json()
        assert {k: v for k, v in after.items() if k != "updated_at"} == {
            k: v for k, v in before.items() if k != "updated_at"
        }
        # Another tenant's queue is not a target (RLS hides it): refused as unknown.
        tag = uuid.uuid4().hex[:8]
        other = httpx.post(
            f"{tenant['api']}/v1/signup", json={"company": f"Other {tag}", "email": f"o-{tag}@example.com"}
        ).json()["api_key"]["key"]
        theirs = httpx.post(
            f"{tenant['api']}/v1/queues",
            json={"name": "Theirs"},
            headers={"Authorization": f"Bearer {other}"},
        ).json()["id"]
        r = client.patch(
            f"/v1/queues/{support}", json={"overflow": [{"target_queue_id": theirs, "after_seconds": 5}]}
        )
        assert r.status_code == 422 and "no queue with id" in r.text
        # Unknown sites for drain: 404.
        assert client.post(f"/v1/sites/{uuid.uuid4()}/drain").status_code == 404
        # Tenant settings: time zone and language, validated.
        assert client.patch("/v1/me/settings", json={"timezone": "Mars/Olympus"}).status_code == 422
        assert client.patch("/v1/me/settings", json={"language": "xx"}).status_code in (400, 422)
        bad = client.patch("/v1/me/settings", json={"monitor_notice": "everyone"})
        assert bad.status_code in (400, 422) and "monitor_notice" in bad.text
        assert client.get("/v1/me/settings").json()["monitor_notice"] == "none"  # the default, unchanged
        r = client.patch("/v1/me/settings", json={"timezone": "Europe/Paris", "language": "fr"})
        assert (
            r.status_code == 200 and r.json()["timezone"] == "Europe/Paris" and r.json()["language"] == "fr"
        )

"""/healthz and /metrics without a platform (tests/unit/api/harness.py: a pool that fails when used, no bus):
what they answer when PostgreSQL and NATS are both unreachable. With a running platform:
tests/integration/api/test_api_routes.py (test_healthz_reports_services_from_the_health_bucket)."""

from __future__ import annotations

from services.api.health import HealthController

from .harness import harness


def test_healthz_is_a_503_naming_what_is_down() -> None:
    with harness(HealthController) as h:
        answer = h.client.get("/healthz")
        assert answer.status_code == 503
        body = answer.json()
        assert body["status"] == "degraded"
        assert body["postgres"]["status"] == "down" and body["postgres"]["error"]
        assert body["nats"] == body["nats"] | {"status": "down", "connected": False, "error": "not connected"}
        # The answering process is up; every other service is down (no heartbeats without NATS).
        services = {name: s["status"] for name, s in body["services"].items()}
        assert services.pop("api") == "ok"
        assert services and set(services.values()) == {"down"}


def test_metrics_answer_whatever_the_platform_does() -> None:
    # The api pods' liveness probe: a 200 in Prometheus text even with PostgreSQL and NATS gone.
    with harness(HealthController) as h:
        answer = h.client.get("/metrics")
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/plain")
        assert "# TYPE sb_platform_healthy gauge" in answer.text

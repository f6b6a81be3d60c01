"""The chart's NATS allow lists are the ones `switchboard up` gives (services/runtime/bususers.py)."""

from __future__ import annotations

import json

from services.runtime.bususers import BUS_SERVICES, permissions
from services.runtime.chart_permissions import CHART_PERMISSIONS, permissions_json


def test_committed_chart_permissions_equal_grants() -> None:
    committed = CHART_PERMISSIONS.read_text()
    assert committed == permissions_json(), (
        "charts/switchboard/files/nats-permissions.json is stale: run `python -m services.runtime.chart_permissions`"
    )
    data = json.loads(committed)
    assert list(data) == list(BUS_SERVICES)
    for service in BUS_SERVICES:
        assert data[service] == permissions(service)
        assert f"sb.*.cmd.{service}.>" in data[service]["subscribe"]["allow"]

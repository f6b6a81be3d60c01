"""Writes the services' NATS allow lists (services/runtime/bususers.py `GRANTS`) into the Helm chart as data,
charts/switchboard/files/nats-permissions.json, so that the chart and the Pulumi program give each service
the same user as `switchboard up` does. A unit test fails while the committed file differs from `GRANTS`:
after changing `GRANTS`, run `python -m services.runtime.chart_permissions`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from services.runtime.bususers import BUS_SERVICES, permissions

__all__ = ["CHART_PERMISSIONS", "permissions_json"]

CHART_PERMISSIONS = (
    Path(__file__).resolve().parents[2] / "charts" / "switchboard" / "files" / "nats-permissions.json"
)


def permissions_json() -> str:
    """Every service's `permissions`, in BUS_SERVICES order, as the chart's data file holds them."""
    return json.dumps({service: permissions(service) for service in BUS_SERVICES}, indent=2) + "\n"


def main() -> int:
    CHART_PERMISSIONS.write_text(permissions_json())
    print(f"wrote {CHART_PERMISSIONS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

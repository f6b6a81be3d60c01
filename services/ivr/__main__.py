"""The ivr service process (python -m services.ivr)."""

from __future__ import annotations

import asyncio

from services.kernel.bus import Bus
from services.kernel.config import Settings
from services.kernel.service import run_service


async def main(settings: Settings, bus: Bus, stop: asyncio.Event) -> None:
    # Work arrives with its own issue; until then the service joins the bus and reports health.
    return None


if __name__ == "__main__":
    run_service("ivr", main)

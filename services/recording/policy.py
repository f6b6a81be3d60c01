"""Recording policy decisions that need no I/O: whether a contact is recorded under a percentage, and when
a recording falls due for purge. Imported by the contact coordinator, so it stays free of heavy imports."""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timedelta

__all__ = ["purge_after", "should_record"]


def should_record(percent: int, contact_id: uuid.UUID) -> bool:
    """`percent` of contacts, chosen by their id (the same contact always gets the same answer, so a
    redelivered event or a restarted coordinator never changes its mind)."""
    if percent >= 100:
        return True
    if percent <= 0:
        return False
    return int.from_bytes(hashlib.sha256(contact_id.bytes).digest()[:8], "big") % 100 < percent


def purge_after(ended_at: datetime, retention_days: int | None) -> datetime | None:
    return None if retention_days is None else ended_at + timedelta(days=retention_days)

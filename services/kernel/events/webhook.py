"""Webhook work (sb.<tenant>.evt.webhook.<name>): reporting's hand-over from its pass over every contact and
recording event to its per-event sender (services/reporting/webhook_worker.py)."""

from __future__ import annotations

import uuid

from ..messages import Event

__all__ = ["WebhookDue"]


class WebhookDue(Event, kw_only=True, frozen=True):
    """An event of this tenant has deliveries pending: the sender POSTs them, and again with back-off while
    any fails. Its id is derived from the event's (services/reporting/webhook_worker.py `due_id`), so a
    batch handled twice hands it over once (JetStream's duplicate window)."""

    domain = "webhook"
    name = "due"
    event_id: uuid.UUID
    event_type: str

"""Reporting facts (services/reporting/facts.py), pure: events applied to a contact's row."""

from __future__ import annotations

import uuid
from datetime import date

from services.kernel import events as ev
from services.reporting.facts import ContactRow, apply


def test_a_consultation_is_no_caller_in_line_but_its_agents_work_counts() -> None:
    tenant, queue, agent = uuid.uuid4(), str(uuid.uuid4()), str(uuid.uuid4())
    consult = ContactRow(contact_id=uuid.uuid4(), month=date(2026, 12, 1))
    events = [
        ev.ContactQueued(
            tenant_id=tenant,
            ts=1000.0,
            call_id=consult.contact_id,
            queue=queue,
            attributes={"kind": "consult", "consult_of": str(uuid.uuid4())},
        ),
        ev.ContactAssigned(
            tenant_id=tenant,
            ts=1002.0,
            call_id=consult.contact_id,
            queue_id=queue,
            agent_id=agent,
            offer_id="x",
        ),
    ]
    assert apply(consult, events) == 1  # the assignment only
    assert consult.queued_at is None and consult.queue_id == queue and consult.agent_id == agent
    caller = ContactRow(contact_id=uuid.uuid4(), month=date(2026, 12, 1))
    queued = ev.ContactQueued(tenant_id=tenant, ts=1000.0, call_id=caller.contact_id, queue=queue)
    assert apply(caller, [queued]) == 1 and caller.queued_at is not None

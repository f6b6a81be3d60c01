"""The one subject-to-type table: every declared message is in it, under the subject it is sent on."""

from __future__ import annotations

import uuid

from services.kernel import events as ev
from services.kernel.registry import command_type, event_type, parse_subject
from services.kernel.subjects import cmd_subject, evt_subject


def test_every_message_is_found_by_its_subject() -> None:
    tenant = uuid.uuid4()
    for name in ev.__all__:
        cls = getattr(ev, name)
        if isinstance(getattr(cls, "domain", None), str) and isinstance(getattr(cls, "name", None), str):
            parsed = parse_subject(evt_subject(tenant, cls.domain, cls.name))
            assert parsed is not None and parsed.tenant_id == tenant and parsed.message_type is cls
            assert event_type(cls.domain, cls.name) is cls
        if isinstance(getattr(cls, "service", None), str) and isinstance(getattr(cls, "name", None), str):
            parsed = parse_subject(cmd_subject(tenant, cls.service, cls.name))
            assert parsed is not None and parsed.kind == "cmd" and parsed.message_type is cls
            assert command_type(cls.service, cls.name) is cls
    # Intermediate bases name a service but no command: they are not in the table.
    assert command_type("media", "MediaCommand") is None


def test_subjects_that_are_not_tenant_messages() -> None:
    assert parse_subject("sb.sys.routing.cmd.3") is None
    assert parse_subject("sb.x.cmd.media") is None
    parsed = parse_subject("sb.not-a-uuid.cmd.media.play")
    assert parsed is not None and parsed.tenant_id is None and parsed.message_type is ev.MediaPlay

"""The services' NATS allow lists (services/runtime/bususers.py), as data: who may read what. The refusals
themselves are checked on the real server in tests/integration/runtime/test_bus_users.py."""

from __future__ import annotations

import pytest

from services.kernel.subjects import inbox_prefix
from services.runtime.bususers import BUS_SERVICES, GRANTS, permissions


def _allowed(service: str, direction: str) -> list[str]:
    return permissions(service)[direction]["allow"]  # type: ignore[index]


def _holders(direction: str, subject: str) -> set[str]:
    return {s for s in BUS_SERVICES if subject in _allowed(s, direction)}


def test_every_service_has_grants_and_commands_name_services() -> None:
    assert set(GRANTS) == set(BUS_SERVICES)
    for grants in GRANTS.values():
        assert set(grants.commands) <= set(BUS_SERVICES)


def test_recordings_and_voicemails_are_read_by_the_recording_service_alone() -> None:
    for stream in ("SB_RECORDING_CHUNKS", "OBJ_sb_voicemails"):
        assert _holders("publish", f"$JS.API.CONSUMER.CREATE.{stream}.>") == (
            {"recording"} if stream == "SB_RECORDING_CHUNKS" else {"media", "recording"}
        )
    assert _holders("publish", "$JS.API.STREAM.MSG.GET.SB_RECORDING_CHUNKS") == {"recording"}
    assert _holders("publish", "sb.*.rec.>") == {"media"}  # who writes chunks
    # ... and the end marker: media's own, or the recording service's for a call whose worker died
    # (a partial recording; refused by the server before, so such recordings stayed "recording").
    assert _holders("publish", "sb.*.rec.*.end") == {"recording"}
    assert not any(s.startswith("sb.*.rec") for svc in BUS_SERVICES for s in _allowed(svc, "subscribe"))


def test_only_routing_hears_its_commands_and_writes_its_journal_and_decisions() -> None:
    assert _holders("subscribe", "sb.sys.routing.cmd.>") == {"routing"}
    assert _holders("publish", "sb.sys.routing.journal.>") == {"routing"}
    assert _holders("publish", "sb.*.evt.contact.>") == {"routing", "contacts"}
    assert "sb.*.evt.contact.>" not in _allowed("media", "publish")


@pytest.mark.parametrize("service", BUS_SERVICES)
def test_each_service_reads_only_its_own_inbox_and_commands(service: str) -> None:
    subscribe = _allowed(service, "subscribe")
    assert f"{inbox_prefix(service)}.>" in subscribe and "_INBOX.>" not in subscribe
    assert [s for s in subscribe if ".cmd." in s and not s.startswith("sb.sys.")] == [f"sb.*.cmd.{service}.>"]
    assert ">" not in subscribe and ">" not in _allowed(service, "publish")
    assert [s for s in _allowed(service, "publish") if s.startswith("$KV.sb_health.")] in (
        [f"$KV.sb_health.{service}.>"],
        [f"$KV.sb_health.{service}.>", "$KV.sb_health.media_front.>"],  # media: the SIP front's too
    )


def test_inbox_prefix_is_the_user_when_it_is_a_plain_token() -> None:
    assert inbox_prefix("media") == "_INBOX.media"
    assert inbox_prefix(None) == "_INBOX"
    assert inbox_prefix("a.b") == "_INBOX"  # never a subject of several tokens
    with pytest.raises(ValueError):
        permissions("nobody")

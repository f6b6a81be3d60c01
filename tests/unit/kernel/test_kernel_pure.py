"""Kernel pieces that need no server: config, ids, subjects, messages, migrations on disk."""

from __future__ import annotations

import uuid
from pathlib import Path

import msgspec
import pytest

from services.kernel import db
from services.kernel.config import ConfigError, load_settings, to_env
from services.kernel.events import ConfigChanged, DeskPush, SeatsChanged
from services.kernel.ids import new_id, parse_id
from services.kernel.messages import decode, encode
from services.kernel.registry import parse_subject
from services.kernel.serving import _decode_event, _event_filters
from services.kernel.subjects import addressee_token, cmd_subject, evt_subject, sys_subject, tenant_of
from services.kernel.tenancy import TenantRequiredError, current_tenant, tenant_context
from services.reporting.ingest import CONSUMER as INGEST_CONSUMER
from services.reporting.webhook_worker import CONSUMER as WEBHOOKS_CONSUMER


def test_settings_from_env_and_round_trip() -> None:
    s = load_settings({"SB_HTTP_PORT": "9000", "SB_NATS_URL": "nats://x@127.0.0.1:1", "SB_DATA_DIR": "/d"})
    assert s.http_port == 9000
    assert s.bind_host == "127.0.0.1"
    assert str(s.data_dir) == "/d"
    assert load_settings(to_env(s)) == s


def test_the_reporting_services_names_and_webhook_backoff_come_from_settings() -> None:
    default = load_settings({})
    assert (default.reporting_durable, default.webhooks_durable, default.webhook_backoff_s) == (
        INGEST_CONSUMER,
        WEBHOOKS_CONSUMER,
        2.0,
    )
    s = load_settings(
        {"SB_REPORTING_DURABLE": "r1", "SB_WEBHOOKS_DURABLE": "w1", "SB_WEBHOOK_BACKOFF_S": "0.5"}
    )
    assert (s.reporting_durable, s.webhooks_durable, s.webhook_backoff_s) == ("r1", "w1", 0.5)
    assert load_settings(to_env(s)) == s


@pytest.mark.parametrize(
    "env",
    [
        {"SB_HTTP_PORT": "eighty"},
        {"SB_SIP_PORT": "70000"},
        {"SB_WEBHOOK_BACKOFF_S": "soon"},
        {"SB_WEBHOOK_BACKOFF_S": "0"},
    ],
)
def test_settings_reject_bad_values_with_the_variable_name(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match=next(iter(env))):
        load_settings(env)


def test_ids_are_uuid7_and_sort_by_creation() -> None:
    ids = [new_id() for _ in range(200)]
    assert all(i.version == 7 for i in ids)
    assert ids == sorted(ids)
    assert parse_id(str(ids[0])) == ids[0]
    assert parse_id("not-a-uuid") is None
    assert parse_id("../../etc") is None


def test_subjects_carry_the_tenant_and_refuse_wildcards() -> None:
    t = uuid.uuid4()
    assert evt_subject(t, "seats", "changed") == f"sb.{t}.evt.seats.changed"
    assert cmd_subject(str(t), "media", "play") == f"sb.{t}.cmd.media.play"
    assert sys_subject("health", "api") == "sb.sys.health.api"
    assert tenant_of(f"sb.{t}.evt.seats.changed") == t
    assert tenant_of("sb.sys.health") is None
    for bad in ("*", ">", "a.b", "x y"):
        with pytest.raises(ValueError):
            evt_subject(t, bad, "changed")
    with pytest.raises(ValueError):
        evt_subject("*", "seats", "changed")


def test_an_addressed_event_goes_on_its_readers_subject_and_nowhere_else() -> None:
    t, agent = uuid.uuid4(), str(uuid.uuid4())
    assert evt_subject(t, "desk", "push", agent) == f"sb.{t}.evt.desk.push.{agent}"
    # A widget caller's or a supervisor's owner has ':' (and could spell '*' or '>'): a digest, never raw.
    for owner in ("widget:k:s", "supervisor:x", "a.b", "*", ">", "h-" + "0" * 32):
        token = addressee_token(owner)
        assert token.startswith("h-") and len(token) == 34 and token != owner
    assert addressee_token("widget:k:s") == addressee_token("widget:k:s") != addressee_token("widget:k:t")
    parsed = parse_subject(f"sb.{t}.evt.desk.push.{agent}")
    assert parsed is not None and (parsed.owner, parsed.name, parsed.addressee) == ("desk", "push", agent)
    assert parse_subject(f"sb.{t}.cmd.media.play.{agent}") is None  # a held call's command: media's own parse
    push = DeskPush(tenant_id=t, agent_id=agent, kind="contact_offer")
    kinds = {("desk", "push"): DeskPush}
    assert _decode_event(f"sb.{t}.evt.desk.push.{agent}", encode(push), kinds) == push
    for subject in (f"sb.{t}.evt.desk.push", f"sb.{t}.evt.desk.push.{uuid.uuid4()}"):
        assert _decode_event(subject, encode(push), kinds) == "the subject's addressee and the event's differ"
    assert set(_event_filters([DeskPush, SeatsChanged], str(t), agent)) == {
        f"sb.{t}.evt.desk.push.{agent}",
        f"sb.{t}.evt.seats.changed",
    }
    assert set(_event_filters([DeskPush])) == {"sb.*.evt.desk.push.*"}


def test_messages_round_trip_with_version_tenant_id_and_timestamp() -> None:
    t = uuid.uuid4()
    e = ConfigChanged(tenant_id=t, kind="agent", op="created", object_id=new_id())
    back = decode(encode(e), ConfigChanged)
    assert back == e
    assert back.v == 1 and back.tenant_id == t and back.id.version == 7 and back.ts > 0
    with pytest.raises(msgspec.ValidationError):
        decode(b'{"tenant_id": "nope", "purchased": 1, "delta": 1}', SeatsChanged)
    with pytest.raises(msgspec.ValidationError):
        decode(encode(e).replace(b'"agent"', b'"planet"'), ConfigChanged)


def test_tenant_context_is_scoped() -> None:
    with pytest.raises(TenantRequiredError):
        current_tenant()
    t = uuid.uuid4()
    with tenant_context(t):
        assert current_tenant() == t
    with pytest.raises(TenantRequiredError):
        current_tenant()


def test_migrations_on_disk_are_well_named_and_ordered(tmp_path: Path) -> None:
    found = db.load_migrations()
    assert [m.version for m in found] == sorted(m.version for m in found)
    assert found[0].version == 1
    (tmp_path / "1_bad.sql").write_text("SELECT 1")
    with pytest.raises(ValueError, match="NNNN_name"):
        db.load_migrations(tmp_path)


def test_with_credentials_escapes() -> None:
    url = db.with_credentials("postgresql://a:b@127.0.0.1:5432/x", "sb_app", "p@ss/w:rd", "switchboard")
    assert url == "postgresql://sb_app:p%40ss%2Fw%3Ard@127.0.0.1:5432/switchboard"

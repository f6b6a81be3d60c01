"""Recordings' request handling without a database (tests/unit/api/harness.py): filters, ids, roles, the
recording policy and the signed audio URL are checked before any read or change. Against PostgreSQL and a
real recording: tests/integration/recording/test_recordings_api.py."""

from __future__ import annotations

import time
import uuid

import pytest

from services.api.auth import Role
from services.api.recordings import (
    RecordingAudioController,
    RecordingController,
    RecordingSettingsController,
    sign_audio_url,
)

from .harness import SECRET, harness, problem


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("contact=not-an-id", "contact"),
        ("since=2026-11-23T09:00:00", "time zone"),
        ("until=2026-11-23T09:00:00", "time zone"),
        ("kind=music", "kind"),
        ("cursor=%21%21", "cursor"),
        ("agent=a%00b", "agent"),
        ("limit=0", "limit"),
    ],
)
def test_a_bad_search_is_refused_before_a_read(query: str, says: str) -> None:
    with harness(RecordingController) as h:
        assert says in str(problem(h.client.get(f"/v1/recordings?{query}"), 422))


def test_an_id_that_is_not_a_uuid_names_no_recording() -> None:
    with harness(RecordingController) as h:
        for response in (
            h.client.get("/v1/recordings/42"),
            h.client.get("/v1/recordings/42/conversation"),
            h.client.get("/v1/recordings/42/url"),
            h.client.delete("/v1/recordings/42"),
            h.client.post("/v1/recordings/42/hold"),
            h.client.delete("/v1/recordings/42/hold"),
            h.client.post("/v1/recordings/42/pause"),
            h.client.post("/v1/recordings/42/resume"),
        ):
            assert "recording" in problem(response, 404)["detail"]
        assert h.reached() == 0


def test_a_url_and_a_hold_reach_the_change() -> None:
    with harness(RecordingController, role=Role.SUPERVISOR) as h:
        # A GET: read-only keys may play recordings (the URL's issue is audited, so it runs as a change).
        assert h.client.get(f"/v1/recordings/{uuid.uuid4()}/url?format=opus").status_code == 202
        problem(h.client.get(f"/v1/recordings/{uuid.uuid4()}/url?format=mp3"), 422)
        assert h.reached() == 1
    with harness(RecordingController) as h:
        assert h.client.post(f"/v1/recordings/{uuid.uuid4()}/hold").status_code == 202
        assert h.client.delete(f"/v1/recordings/{uuid.uuid4()}/hold").status_code == 202
        assert h.reached() == 2


@pytest.mark.parametrize("role", [Role.DEVELOPER, Role.SUPERVISOR])
def test_only_an_admin_deletes_holds_pauses_or_sets_the_policy(role: Role) -> None:
    with harness(RecordingController, RecordingSettingsController, role=role) as h:
        rid = uuid.uuid4()
        for response in (
            h.client.delete(f"/v1/recordings/{rid}"),
            h.client.post(f"/v1/recordings/{rid}/hold"),
            h.client.post(f"/v1/recordings/{rid}/pause"),
            h.client.put("/v1/recording-settings", json={"recording_percent": 50}),
            h.client.post("/v1/recording-settings/rotate-key"),
        ):
            h.refused(response, 403)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"recording_percent": 101}, "recording_percent"),
        ({"retention_days": 0}, "retention_days"),
        ({"announcement": "x" * 501}, "announcement"),
        ({"announcement": "This call\x00 may be recorded"}, "announcement"),
        ({"opus_copy": "yes"}, "opus_copy"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_a_bad_policy_is_refused_before_any_change(body: dict[str, object], field: str) -> None:
    with harness(RecordingSettingsController) as h:
        assert field in str(h.refused(h.client.put("/v1/recording-settings", json=body), 422))


def test_a_good_policy_reaches_the_change() -> None:
    with harness(RecordingSettingsController) as h:
        body = {"recording_percent": 100, "retention_days": 30, "announcement": "  "}
        assert h.client.put("/v1/recording-settings", json=body).status_code == 202
        assert h.reached() == 1


def test_the_audio_url_is_checked_before_the_recording_is_opened() -> None:
    with harness(RecordingAudioController) as h:
        tenant, rid = uuid.uuid4(), uuid.uuid4()
        assert "required" in problem(h.client.get(f"/v1/recording-audio/{rid}"), 403)["detail"]
        past = int(time.time()) - 1
        expired = sign_audio_url(SECRET, tenant, rid, past)
        assert "expired" in problem(h.client.get(expired), 403)["detail"]
        future = int(time.time()) + 60
        other_tenant = sign_audio_url(SECRET, tenant, rid, future).replace(str(tenant), str(uuid.uuid4()))
        assert "signature" in problem(h.client.get(other_tenant), 403)["detail"]
        as_opus = sign_audio_url(SECRET, tenant, rid, future) + "&format=opus"
        assert "signature" in problem(h.client.get(as_opus), 403)["detail"]
        problem(h.client.get(f"/v1/recording-audio/not-an-id?tenant={tenant}&expires={future}&sig=x"), 404)

"""Recordings: list and search (time, queue, agent, number, contact), one recording's details, a signed
expiring URL to play or download it, deletion and legal hold. Every access and change is audited.

The audio itself is served at /v1/recording-audio/{id} to whoever holds a valid signed URL (a browser's
<audio> element sends no API key): the signature (HMAC-SHA256 under the platform's token secret) covers the
tenant, the recording and the expiry, so changing any of them in the URL makes it invalid.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import asyncpg
import msgspec
from litestar import Controller, Request, delete, get, post, put
from litestar.params import JSONBody, QueryParameter
from litestar.response import Stream

from services.kernel.bus import BusError, CommandTimeout
from services.kernel.db import tenant_tx
from services.kernel.events import ConfigChanged, MediaRecordPause, MediaRecordResume, RecordingDeleted
from services.kernel.ids import parse_id
from services.recording.records import (
    RECORDING_COLUMNS,
    RecordingError,
    audit,
    delete_recording,
    open_audio,
    set_hold,
)
from services.recording.setup import keyring_from, store_from
from services.recording.store import BlobStore
from services.recording.vault import KeyRing

from . import mutations
from .auth import Principal, admin_only, principal_of
from .crud import IdParam, path_id
from .pagination import DEFAULT_LIMIT, CursorParam, LimitParam, decode_cursor, page_of
from .problems import READ_ERRORS, WRITE_ERRORS, Problem, conflict, not_found
from .state import ApiState, api_state
from .validation import check_text

__all__ = [
    "RecordingAudioController",
    "RecordingController",
    "RecordingSettingsController",
    "sign_audio_url",
    "verify_audio_signature",
]

AUDIO_PATH = "/v1/recording-audio"
MEDIA_TIMEOUT_S = 3.0


class Recording(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    status: str
    partial: bool
    law: str
    duration_s: float
    pauses: list[list[float]]
    started_at: datetime
    ended_at: datetime | None
    available_at: datetime | None
    sha256: str | None
    size_bytes: int | None
    retention_days: int | None
    purge_after: datetime | None
    legal_hold: bool
    deleted_at: datetime | None
    deleted_reason: str | None
    # Formats that can be played or downloaded: "wav" (the master), and "opus" when a copy was kept.
    formats: list[str]
    # Its place in its contact's conversation: segment 0, 1, ... in order; "talk" (the caller and
    # `agent_id`) or "consult" (`agent_id` consulting `consulted_agent_id` while the caller waits); or
    # "voicemail": a message a caller left (one channel, 16-bit PCM: law "L16"), its id its desk task's.
    segment: int
    kind: str
    consulted_agent_id: uuid.UUID | None
    # A voicemail: the call (and contact) it was left on.
    left_on: uuid.UUID | None = None
    # The contact it belongs to (segment 0's id is the contact's), and from the contact record.
    contact_id: uuid.UUID
    caller: str
    dialled: str
    queue_id: uuid.UUID | None
    queue_name: str
    agent_id: uuid.UUID | None


class RecordingPage(msgspec.Struct):
    items: list[Recording]
    next_cursor: str | None


class Conversation(msgspec.Struct, kw_only=True):
    contact_id: uuid.UUID
    duration_s: float  # the segments' audio, end to end
    segments: list[Recording]


class RecordingUrl(msgspec.Struct):
    url: str
    expires_at: datetime


_SELECT = f"""SELECT {RECORDING_COLUMNS}, r.opus_key, r.segment, r.segment_kind, r.consulted_agent_id, r.left_on,
        COALESCE(r.contact_id, r.id) AS contact, c.caller, c.dialled, c.queue_id, c.queue_name,
        COALESCE(r.agent_id, c.agent_id) AS agent_id
    FROM recordings r LEFT JOIN contacts c ON c.id = COALESCE(r.contact_id, r.id)"""


def _recording(row: asyncpg.Record) -> Recording:
    return Recording(
        id=row["id"],
        status=row["status"],
        partial=row["partial"],
        law=row["law"],
        duration_s=row["duration_s"],
        pauses=msgspec.json.decode(row["pauses"]),
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        available_at=row["available_at"],
        sha256=row["sha256"],
        size_bytes=row["size_bytes"],
        retention_days=row["retention_days"],
        purge_after=row["purge_after"],
        legal_hold=row["legal_hold"],
        deleted_at=row["deleted_at"],
        deleted_reason=row["deleted_reason"],
        formats=["wav", "opus"] if row["opus_key"] else ["wav"],
        segment=row["segment"],
        kind=row["segment_kind"],
        consulted_agent_id=row["consulted_agent_id"],
        left_on=row["left_on"],
        contact_id=row["contact"],
        caller=row["caller"] or "",
        dialled=row["dialled"] or "",
        queue_id=row["queue_id"],
        queue_name=row["queue_name"] or "",
        agent_id=row["agent_id"],
    )


def _vault(state: ApiState) -> tuple[KeyRing, BlobStore]:
    """Built on first use (the master key file is read then), kept for the process's life."""
    if "recording_keys" not in state.extra:
        state.extra["recording_keys"] = keyring_from(state.settings)
        state.extra["recording_store"] = store_from(state.settings)
    return state.extra["recording_keys"], state.extra["recording_store"]


def _url_key(secret: str) -> bytes:
    # Its own key, derived from the token secret: a URL signature can never pass for a token's.
    return hmac.new(secret.encode(), b"sb-recording-url", hashlib.sha256).digest()


def _signature(secret: str, tenant_id: uuid.UUID, recording_id: uuid.UUID, expires: int, fmt: str) -> str:
    signed = f"{tenant_id}.{recording_id}.{expires}" + ("" if fmt == "wav" else f".{fmt}")
    mac = hmac.new(_url_key(secret), signed.encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()


def sign_audio_url(
    secret: str, tenant_id: uuid.UUID, recording_id: uuid.UUID, expires: int, fmt: str = "wav"
) -> str:
    sig = _signature(secret, tenant_id, recording_id, expires, fmt)
    extra = "" if fmt == "wav" else f"&format={fmt}"
    return f"{AUDIO_PATH}/{recording_id}?tenant={tenant_id}&expires={expires}{extra}&sig={sig}"


def verify_audio_signature(
    secret: str,
    tenant_id: uuid.UUID,
    recording_id: uuid.UUID,
    expires: int,
    sig: str,
    now: float,
    fmt: str = "wav",
) -> str | None:
    """None when valid; otherwise why not (said to the caller: it reveals nothing about other tenants)."""
    if not hmac.compare_digest(_signature(secret, tenant_id, recording_id, expires, fmt), sig):
        return "this recording URL's signature is not valid"
    if now > expires:
        return "this recording URL has expired; ask for a new one"
    return None


def _problem(exc: RecordingError) -> Problem:
    if exc.code == "not_found":
        return not_found("recording")
    if exc.code in ("not_available", "held", "no_copy"):
        return conflict(str(exc))
    return Problem(500, f"the recording cannot be read: {exc}", slug="recording-corrupt")


def _actor(principal: Principal) -> dict[str, Any]:
    return {"actor_key_id": principal.key_id, "actor_role": principal.role.value}


def _text(field: str, value: str | None) -> str | None:
    return None if value is None or not value.strip() else check_text(field, value.strip(), max_len=254)


class RecordingController(Controller):
    path = "/v1/recordings"
    tags = ["recordings"]

    @get("/", responses=READ_ERRORS, summary="List and search recordings, newest first")
    async def list_recordings(
        self,
        request: Request[Any, Any, Any],
        since: Annotated[
            datetime | None, QueryParameter(description="started at or after (ISO 8601)")
        ] = None,
        until: Annotated[datetime | None, QueryParameter(description="started before (ISO 8601)")] = None,
        queue: Annotated[str | None, QueryParameter(max_length=100, description="queue id or name")] = None,
        agent: Annotated[str | None, QueryParameter(max_length=254, description="agent id or email")] = None,
        number: Annotated[
            str | None, QueryParameter(max_length=100, description="the caller's or the dialled number")
        ] = None,
        contact: Annotated[
            str | None,
            QueryParameter(
                max_length=100, description="contact id (its recordings and the voicemails left on it)"
            ),
        ] = None,
        kind: Annotated[
            Literal["talk", "consult", "voicemail"] | None,
            QueryParameter(
                description="talk, consult (segments of calls) or voicemail (messages callers left)"
            ),
        ] = None,
        include_deleted: Annotated[bool, QueryParameter(description="list deleted recordings too")] = False,
        limit: LimitParam = DEFAULT_LIMIT,
        cursor: CursorParam = None,
    ) -> RecordingPage:
        after = decode_cursor(cursor)
        queue, agent, number = _text("queue", queue), _text("agent", agent), _text("number", number)
        contact_id = None
        if contact is not None and contact.strip():
            contact_id = parse_id(contact.strip())
            if contact_id is None:
                raise Problem(422, "contact: not a contact id (UUID)")
        for name, value in (("since", since), ("until", until)):
            if value is not None and value.tzinfo is None:
                raise Problem(422, f"{name}: give a time zone (e.g. 2026-11-23T09:00Z)")
        principal = principal_of(request)
        async with tenant_tx(api_state(request).db(), principal.tenant_id, readonly=True) as conn:
            rows = await conn.fetch(
                f"""{_SELECT}
                    LEFT JOIN queues q ON q.id = c.queue_id
                    LEFT JOIN agents a ON a.id IN (COALESCE(r.agent_id, c.agent_id), r.consulted_agent_id)
                    WHERE ($1::timestamptz IS NULL OR r.started_at >= $1)
                      AND ($2::timestamptz IS NULL OR r.started_at < $2)
                      AND ($3::text IS NULL OR c.queue_id::text = $3 OR lower(q.name) = lower($3)
                           OR lower(c.queue_name) = lower($3))
                      AND ($4::text IS NULL OR COALESCE(r.agent_id, c.agent_id)::text = $4
                           OR r.consulted_agent_id::text = $4 OR lower(a.email) = lower($4))
                      AND ($5::text IS NULL OR c.caller = $5 OR c.dialled = $5)
                      AND ($6::uuid IS NULL OR COALESCE(r.contact_id, r.id) = $6 OR r.left_on = $6)
                      AND ($7 OR r.status <> 'deleted')
                      AND ($8::uuid IS NULL OR r.id < $8)
                      AND ($10::text IS NULL OR r.segment_kind = $10)
                    ORDER BY r.id DESC LIMIT $9""",
                since,
                until,
                queue,
                agent,
                number,
                contact_id,
                include_deleted,
                after,
                limit + 1,
                kind,
            )
        page, next_cursor = page_of(rows, limit)
        return RecordingPage(items=[_recording(r) for r in page], next_cursor=next_cursor)

    @get("/{recording_id:str}", responses=READ_ERRORS, summary="One recording's details")
    async def get_recording(self, request: Request[Any, Any, Any], recording_id: IdParam) -> Recording:
        rid = path_id(recording_id, "recording")
        principal = principal_of(request)
        async with tenant_tx(api_state(request).db(), principal.tenant_id, readonly=True) as conn:
            row = await conn.fetchrow(f"{_SELECT} WHERE r.id = $1", rid)
        if row is None:
            raise not_found("recording")
        return _recording(row)

    @get(
        "/{recording_id:str}/conversation",
        responses=READ_ERRORS,
        summary="Every recording of a contact's conversation, in order",
    )
    async def conversation(self, request: Request[Any, Any, Any], recording_id: IdParam) -> Conversation:
        """The contact's recordings (by the contact's id or any of its recordings'), segment by segment: each
        agent the caller talked to and each consultation between agents, in the order they happened."""
        rid = path_id(recording_id, "recording")
        principal = principal_of(request)
        async with tenant_tx(api_state(request).db(), principal.tenant_id, readonly=True) as conn:
            rows = await conn.fetch(
                f"""{_SELECT} WHERE COALESCE(r.contact_id, r.id) =
                        (SELECT COALESCE(contact_id, id) FROM recordings WHERE id = $1)
                    ORDER BY r.segment, r.started_at""",
                rid,
            )
        if not rows:
            raise not_found("recording")
        segments = [_recording(row) for row in rows]
        return Conversation(
            contact_id=segments[0].contact_id,
            duration_s=round(sum(seg.duration_s for seg in segments), 3),
            segments=segments,
        )

    # A GET: it changes nothing but the audit log, so read-only keys (supervisors) can play recordings.
    @get(
        "/{recording_id:str}/url", responses=READ_ERRORS, summary="A signed, expiring URL to play or download"
    )
    async def issue_url(
        self,
        request: Request[Any, Any, Any],
        recording_id: IdParam,
        format: Annotated[
            Literal["wav", "opus"],
            QueryParameter(description="wav (the master) or opus (its Opus-in-Ogg copy)"),
        ] = "wav",
    ) -> RecordingUrl:
        rid = path_id(recording_id, "recording")
        principal = principal_of(request)
        state = api_state(request)
        expires = int(time.time()) + state.settings.recording_url_ttl_s
        async with tenant_tx(state.db(), principal.tenant_id) as conn:
            row = await conn.fetchrow("SELECT status, opus_key FROM recordings WHERE id = $1", rid)
            if row is None:
                raise not_found("recording")
            if row["status"] != "available":
                raise conflict(f"the recording is {row['status']}; only an available recording can be played")
            if format == "opus" and row["opus_key"] is None:
                raise conflict(
                    "this recording has no Opus copy (the tenant's opus_copy was off when it was stored)"
                )
            await audit(
                conn,
                principal.tenant_id,
                "recording.url_issued",
                rid,
                **_actor(principal),
                detail={"format": format},
            )
        path = sign_audio_url(state.settings.token_secret, principal.tenant_id, rid, expires, format)
        return RecordingUrl(
            url=str(request.base_url).rstrip("/") + path, expires_at=datetime.fromtimestamp(expires, UTC)
        )

    @delete("/{recording_id:str}", guards=[admin_only], responses=WRITE_ERRORS, summary="Delete a recording")
    async def delete_recording(self, request: Request[Any, Any, Any], recording_id: IdParam) -> None:
        rid = path_id(recording_id, "recording")
        principal = principal_of(request)
        state = api_state(request)
        _, store = _vault(state)
        try:
            async with tenant_tx(state.db(), principal.tenant_id) as conn:
                deleted = await delete_recording(
                    conn,
                    store,
                    principal.tenant_id,
                    rid,
                    reason="request",
                    now=time.time(),
                    **_actor(principal),
                )
        except RecordingError as exc:
            raise _problem(exc) from None
        if deleted:
            await state.publish(
                [RecordingDeleted(tenant_id=principal.tenant_id, recording_id=rid, reason="request")]
            )

    @post(
        "/{recording_id:str}/hold",
        status_code=200,
        guards=[admin_only],
        responses=WRITE_ERRORS,
        summary="Put a legal hold on a recording (no purge, no deletion)",
    )
    async def hold(self, request: Request[Any, Any, Any], recording_id: IdParam) -> Recording:
        return await _set_hold(request, recording_id, True)

    @delete(
        "/{recording_id:str}/hold",
        status_code=200,
        guards=[admin_only],
        responses=WRITE_ERRORS,
        summary="Release a recording's legal hold",
    )
    async def release(self, request: Request[Any, Any, Any], recording_id: IdParam) -> Recording:
        return await _set_hold(request, recording_id, False)

    @post(
        "/{recording_id:str}/pause",
        status_code=200,
        guards=[admin_only],
        responses=WRITE_ERRORS,
        summary="Pause a live recording (card numbers): nothing of the paused span is kept",
    )
    async def pause(self, request: Request[Any, Any, Any], recording_id: IdParam) -> Recording:
        return await _pause(request, recording_id, True)

    @post(
        "/{recording_id:str}/resume",
        status_code=200,
        guards=[admin_only],
        responses=WRITE_ERRORS,
        summary="Resume a paused recording",
    )
    async def resume(self, request: Request[Any, Any, Any], recording_id: IdParam) -> Recording:
        return await _pause(request, recording_id, False)


async def _pause(request: Request[Any, Any, Any], recording_id: str, pause: bool) -> Recording:
    """Tell the media worker that holds the call; the paused span never reaches the spool."""
    rid = path_id(recording_id, "recording")
    principal = principal_of(request)
    state = api_state(request)
    async with tenant_tx(state.db(), principal.tenant_id) as conn:
        status = await conn.fetchval("SELECT status FROM recordings WHERE id = $1", rid)
        if status is None:
            raise not_found("recording")
        if status != "recording":
            raise conflict(f"the recording is {status}: only a call being recorded can be paused or resumed")
        await audit(
            conn,
            principal.tenant_id,
            "recording.paused" if pause else "recording.resumed",
            rid,
            **_actor(principal),
        )
    command = (MediaRecordPause if pause else MediaRecordResume)(tenant_id=principal.tenant_id, call_id=rid)
    if state.bus is None:
        raise Problem(503, "the platform's bus is not connected; try again")
    try:
        reply = await state.bus.request(command, timeout=MEDIA_TIMEOUT_S)
    except (BusError, CommandTimeout):
        raise conflict("the call is not live on any media worker (it ended, or its worker is gone)") from None
    if not reply.ok:
        raise conflict(f"media refused: {reply.error}")
    async with tenant_tx(state.db(), principal.tenant_id, readonly=True) as conn:
        row = await conn.fetchrow(f"{_SELECT} WHERE r.id = $1", rid)
    return _recording(row)


async def _set_hold(request: Request[Any, Any, Any], recording_id: str, hold: bool) -> Recording:
    rid = path_id(recording_id, "recording")
    principal = principal_of(request)
    async with tenant_tx(api_state(request).db(), principal.tenant_id) as conn:
        try:
            await set_hold(conn, principal.tenant_id, rid, hold, **_actor(principal))
        except RecordingError as exc:
            raise _problem(exc) from None
        row = await conn.fetchrow(f"{_SELECT} WHERE r.id = $1", rid)
    return _recording(row)


class RecordingSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The tenant's recording policy; a queue's own settings win over it (docs/recording.md)."""

    recording_percent: Annotated[int, msgspec.Meta(ge=0, le=100)] = 0
    retention_days: Annotated[int, msgspec.Meta(ge=1, le=36500)] | None = None
    # Keep an Opus-in-Ogg copy beside each new recording's WAV master.
    opus_copy: bool = False
    # What a caller hears before a recorded call is connected ("This call may be recorded."); none when
    # null or empty. A queue's own announcement wins.
    announcement: Annotated[str, msgspec.Meta(max_length=500)] | None = None


class RecordingKey(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    created_at: datetime


class RecordingSettingsController(Controller):
    path = "/v1/recording-settings"
    tags = ["recordings"]

    @get("/", responses=READ_ERRORS, summary="The tenant's recording policy")
    async def get_settings(self, request: Request[Any, Any, Any]) -> RecordingSettings:
        principal = principal_of(request)
        async with tenant_tx(api_state(request).db(), principal.tenant_id, readonly=True) as conn:
            row = await conn.fetchrow(
                """SELECT recording_percent, recording_retention_days, recording_opus_copy, recording_announcement
                   FROM tenants"""
            )
        return RecordingSettings(
            recording_percent=row["recording_percent"],
            retention_days=row["recording_retention_days"],
            opus_copy=row["recording_opus_copy"],
            announcement=row["recording_announcement"],
        )

    @put("/", guards=[admin_only], responses=WRITE_ERRORS, summary="Replace the tenant's recording policy")
    async def put_settings(
        self, request: Request[Any, Any, Any], data: JSONBody[RecordingSettings]
    ) -> RecordingSettings:
        principal = principal_of(request)
        async with tenant_tx(api_state(request).db(), principal.tenant_id) as conn:
            announcement = None
            if data.announcement is not None and data.announcement.strip():
                announcement = check_text("announcement", data.announcement.strip(), max_len=500)
            data = msgspec.structs.replace(data, announcement=announcement)
            await conn.execute(
                """UPDATE tenants SET recording_percent = $2, recording_retention_days = $3,
                       recording_opus_copy = $4, recording_announcement = $5 WHERE id = $1""",
                principal.tenant_id,
                data.recording_percent,
                data.retention_days,
                data.opus_copy,
                announcement,
            )
            await mutations.audit(
                conn,
                principal,
                "recording_settings.updated",
                "tenant",
                principal.tenant_id,
                msgspec.structs.asdict(data),
            )
        # The contact coordinator keeps the recording policy in memory (services/contacts/context.py).
        changed = ConfigChanged(
            tenant_id=principal.tenant_id, kind="tenant", op="updated", object_id=principal.tenant_id
        )
        await api_state(request).publish([changed])
        return data

    @post("/rotate-key", status_code=201, guards=[admin_only], responses=WRITE_ERRORS, summary="New data key")
    async def rotate_key(self, request: Request[Any, Any, Any]) -> RecordingKey:
        """The tenant's data key for new recordings is replaced; the old one still opens what it sealed."""
        principal = principal_of(request)
        state = api_state(request)
        keys, _ = _vault(state)
        async with tenant_tx(state.db(), principal.tenant_id) as conn:
            key_id, _key = await keys.rotate(conn, principal.tenant_id)
            created = await conn.fetchval("SELECT created_at FROM recording_keys WHERE id = $1", key_id)
            await mutations.audit(conn, principal, "recording_key.rotated", "recording_key", key_id)
        return RecordingKey(id=key_id, created_at=created)


class RecordingAudioController(Controller):
    """The WAV behind a signed URL (no API key: the signature is the credential)."""

    path = AUDIO_PATH
    tags = ["recordings"]

    @get(
        "/{recording_id:str}",
        responses=READ_ERRORS,
        summary="The recording's audio (signed URL)",
        security=[],
    )
    async def audio(
        self,
        request: Request[Any, Any, Any],
        recording_id: IdParam,
        tenant: Annotated[str | None, QueryParameter(max_length=64)] = None,
        expires: Annotated[str | None, QueryParameter(max_length=20)] = None,
        sig: Annotated[str | None, QueryParameter(max_length=100)] = None,
        format: Annotated[Literal["wav", "opus"], QueryParameter()] = "wav",
    ) -> Stream:
        state = api_state(request)
        rid = path_id(recording_id, "recording")
        # Everything else is checked by the signature: a malformed part is just an invalid URL.
        tenant_id = parse_id(tenant or "")
        if tenant_id is None or not sig or not (expires or "").isdigit():
            raise Problem(403, "this recording URL is not valid (tenant, expires and sig are required)")
        why = verify_audio_signature(
            state.settings.token_secret, tenant_id, rid, int(expires or 0), sig, time.time(), format
        )
        if why is not None:
            raise Problem(403, why)
        keys, store = _vault(state)
        try:
            async with tenant_tx(state.db(), tenant_id) as conn:
                audio = await open_audio(
                    conn, keys, store, tenant_id, rid, copy="" if format == "wav" else format
                )
                client = request.client.host if request.client else None
                detail = {"client": client, "format": format}
                await audit(conn, tenant_id, "recording.downloaded", rid, detail=detail)
        except RecordingError as exc:
            raise _problem(exc) from None
        # Streamed: an hour of call is never held. Each piece is authenticated before it is sent; a file
        # corrupted past its first segment ends the response early (the client's SHA-256 check fails).
        headers = {
            "Content-Disposition": f'attachment; filename="{rid}.{format}"',
            "X-Content-SHA256": audio.sha256,
            "Cache-Control": "no-store",
        }
        if audio.size:
            headers["Content-Length"] = str(audio.size)
        return Stream(
            audio.pieces, media_type="audio/wav" if format == "wav" else "audio/ogg", headers=headers
        )

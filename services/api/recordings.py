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
from litestar import Controller, Request, Response, delete, get, post, put
from litestar.params import JSONBody, QueryParameter
from litestar.response import Stream

from services.kernel.bus import BusError, CommandTimeout
from services.kernel.db import tenant_tx
from services.kernel.events import ConfigChanged, MediaRecordPause, MediaRecordResume, RecordingDeleted
from services.kernel.ids import parse_id
from services.kernel.messages import Event
from services.recording.records import (
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
from .auth import Principal, admin_only
from .crud import IdParam, path_id
from .deps import ApiDep, CallerDep, MutationDep, TenantConnDep
from .mutations import Outcome
from .pagination import DEFAULT_LIMIT, CursorParam, LimitParam, decode_cursor, page_of
from .problems import DELETE_RESPONSES, READ_ERRORS, WRITE_ERRORS, Problem, conflict, not_found
from .queries import recordings as sql
from .state import ApiState
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
        tenant_conn: TenantConnDep,
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
        rows = await sql.page(
            tenant_conn,
            since=since,
            until=until,
            queue=queue,
            agent=agent,
            number=number,
            contact_id=contact_id,
            kind=kind,
            include_deleted=include_deleted,
            after=after,
            limit=limit + 1,
        )
        page, next_cursor = page_of(rows, limit)
        return RecordingPage(items=[_recording(r) for r in page], next_cursor=next_cursor)

    @get("/{recording_id:str}", responses=READ_ERRORS, summary="One recording's details")
    async def get_recording(self, tenant_conn: TenantConnDep, recording_id: IdParam) -> Recording:
        row = await sql.get(tenant_conn, path_id(recording_id, "recording"))
        if row is None:
            raise not_found("recording")
        return _recording(row)

    @get(
        "/{recording_id:str}/conversation",
        responses=READ_ERRORS,
        summary="Every recording of a contact's conversation, in order",
    )
    async def conversation(self, tenant_conn: TenantConnDep, recording_id: IdParam) -> Conversation:
        """The contact's recordings (by the contact's id or any of its recordings'), segment by segment: each
        agent the caller talked to and each consultation between agents, in the order they happened."""
        rows = await sql.conversation(tenant_conn, path_id(recording_id, "recording"))
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
        mutation: MutationDep,
        api: ApiDep,
        recording_id: IdParam,
        format: Annotated[
            Literal["wav", "opus"],
            QueryParameter(description="wav (the master) or opus (its Opus-in-Ogg copy)"),
        ] = "wav",
    ) -> Response[RecordingUrl]:
        # The Request for its base URL alone: the answer is an absolute URL a browser's <audio> can open.
        rid = path_id(recording_id, "recording")
        expires = int(time.time()) + api.settings.recording_url_ttl_s
        base = str(request.base_url).rstrip("/")

        async def work(conn: asyncpg.Connection, principal: Principal) -> Outcome[RecordingUrl]:
            row = await sql.playable(conn, rid)
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
            path = sign_audio_url(api.settings.token_secret, principal.tenant_id, rid, expires, format)
            url = RecordingUrl(url=base + path, expires_at=datetime.fromtimestamp(expires, UTC))
            return Outcome(200, url)

        return await mutation.run(work)

    @delete(
        "/{recording_id:str}",
        status_code=204,
        guards=[admin_only],
        responses=DELETE_RESPONSES,
        summary="Delete a recording",
    )
    async def delete_recording(
        self, mutation: MutationDep, api: ApiDep, recording_id: IdParam
    ) -> Response[None]:
        rid = path_id(recording_id, "recording")
        _, store = _vault(api)

        async def work(conn: asyncpg.Connection, principal: Principal) -> Outcome[None]:
            try:
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
            events: list[Event] = []
            if deleted:  # a recording deleted before is not announced again
                events.append(
                    RecordingDeleted(tenant_id=principal.tenant_id, recording_id=rid, reason="request")
                )
            return Outcome(204, None, events)

        return await mutation.run(work)

    @post(
        "/{recording_id:str}/hold",
        status_code=200,
        guards=[admin_only],
        responses=WRITE_ERRORS,
        summary="Put a legal hold on a recording (no purge, no deletion)",
    )
    async def hold(self, mutation: MutationDep, recording_id: IdParam) -> Response[Recording]:
        return await mutation.run(_hold(path_id(recording_id, "recording"), hold=True))

    @delete(
        "/{recording_id:str}/hold",
        status_code=200,
        guards=[admin_only],
        responses=WRITE_ERRORS,
        summary="Release a recording's legal hold",
    )
    async def release(self, mutation: MutationDep, recording_id: IdParam) -> Response[Recording]:
        return await mutation.run(_hold(path_id(recording_id, "recording"), hold=False))

    @post(
        "/{recording_id:str}/pause",
        status_code=200,
        guards=[admin_only],
        responses=WRITE_ERRORS,
        summary="Pause a live recording (card numbers): nothing of the paused span is kept",
    )
    async def pause(self, principal: CallerDep, api: ApiDep, recording_id: IdParam) -> Recording:
        return await _pause(principal, api, path_id(recording_id, "recording"), pause=True)

    @post(
        "/{recording_id:str}/resume",
        status_code=200,
        guards=[admin_only],
        responses=WRITE_ERRORS,
        summary="Resume a paused recording",
    )
    async def resume(self, principal: CallerDep, api: ApiDep, recording_id: IdParam) -> Recording:
        return await _pause(principal, api, path_id(recording_id, "recording"), pause=False)


async def _pause(principal: Principal, api: ApiDep, rid: uuid.UUID, *, pause: bool) -> Recording:
    """Tell the media worker that holds the call; the paused span never reaches the spool. Not a `mutation`:
    the audit is committed before media is asked (no transaction waits on the bus), and the recording is
    read again after media answered."""
    async with tenant_tx(api.db(), principal.tenant_id) as conn:
        status = await sql.status(conn, rid)
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
    if api.bus is None:
        raise Problem(503, "the platform's bus is not connected; try again")
    try:
        reply = await api.bus.request(command, timeout=MEDIA_TIMEOUT_S)
    except (BusError, CommandTimeout):
        raise conflict("the call is not live on any media worker (it ended, or its worker is gone)") from None
    if not reply.ok:
        raise conflict(f"media refused: {reply.error}")
    async with tenant_tx(api.db(), principal.tenant_id, readonly=True) as conn:
        row = await sql.get(conn, rid)
    if row is None:
        raise not_found("recording")
    return _recording(row)


def _hold(rid: uuid.UUID, *, hold: bool) -> mutations.Work[Recording]:
    async def work(conn: asyncpg.Connection, principal: Principal) -> Outcome[Recording]:
        try:
            await set_hold(conn, principal.tenant_id, rid, hold, **_actor(principal))
        except RecordingError as exc:
            raise _problem(exc) from None
        row = await sql.get(conn, rid)
        if row is None:
            raise not_found("recording")
        return Outcome(200, _recording(row))

    return work


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
    async def get_settings(self, tenant_conn: TenantConnDep) -> RecordingSettings:
        row = await sql.settings(tenant_conn)
        return RecordingSettings(
            recording_percent=row["recording_percent"],
            retention_days=row["recording_retention_days"],
            opus_copy=row["recording_opus_copy"],
            announcement=row["recording_announcement"],
        )

    @put("/", guards=[admin_only], responses=WRITE_ERRORS, summary="Replace the tenant's recording policy")
    async def put_settings(
        self, mutation: MutationDep, data: JSONBody[RecordingSettings]
    ) -> Response[RecordingSettings]:
        announcement = None
        if data.announcement is not None and data.announcement.strip():
            announcement = check_text("announcement", data.announcement.strip(), max_len=500)
        policy = msgspec.structs.replace(data, announcement=announcement)

        async def work(conn: asyncpg.Connection, principal: Principal) -> Outcome[RecordingSettings]:
            await sql.update_settings(
                conn,
                principal.tenant_id,
                percent=policy.recording_percent,
                retention_days=policy.retention_days,
                opus_copy=policy.opus_copy,
                announcement=announcement,
            )
            await mutations.audit(
                conn,
                principal,
                "recording_settings.updated",
                "tenant",
                principal.tenant_id,
                msgspec.structs.asdict(policy),
            )
            # The contact coordinator keeps the recording policy in memory (services/contacts/context.py).
            changed = ConfigChanged(
                tenant_id=principal.tenant_id, kind="tenant", op="updated", object_id=principal.tenant_id
            )
            return Outcome(200, policy, [changed])

        return await mutation.run(work)

    @post("/rotate-key", status_code=201, guards=[admin_only], responses=WRITE_ERRORS, summary="New data key")
    async def rotate_key(self, mutation: MutationDep, api: ApiDep) -> Response[RecordingKey]:
        """The tenant's data key for new recordings is replaced; the old one still opens what it sealed."""
        keys, _ = _vault(api)

        async def work(conn: asyncpg.Connection, principal: Principal) -> Outcome[RecordingKey]:
            key_id, _key = await keys.rotate(conn, principal.tenant_id)
            created = await sql.key_created_at(conn, key_id)
            await mutations.audit(conn, principal, "recording_key.rotated", "recording_key", key_id)
            return Outcome(201, RecordingKey(id=key_id, created_at=created))

        return await mutation.run(work)


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
        api: ApiDep,
        recording_id: IdParam,
        tenant: Annotated[str | None, QueryParameter(max_length=64)] = None,
        expires: Annotated[str | None, QueryParameter(max_length=20)] = None,
        sig: Annotated[str | None, QueryParameter(max_length=100)] = None,
        format: Annotated[Literal["wav", "opus"], QueryParameter()] = "wav",
    ) -> Stream:
        # The Request for the client's address alone, which the download's audit line records (no key, no
        # principal: the signed URL is the credential, so no `tenant_conn` either).
        rid = path_id(recording_id, "recording")
        # Everything else is checked by the signature: a malformed part is just an invalid URL.
        tenant_id = parse_id(tenant or "")
        if tenant_id is None or not sig or not (expires or "").isdigit():
            raise Problem(403, "this recording URL is not valid (tenant, expires and sig are required)")
        why = verify_audio_signature(
            api.settings.token_secret, tenant_id, rid, int(expires or 0), sig, time.time(), format
        )
        if why is not None:
            raise Problem(403, why)
        keys, store = _vault(api)
        try:
            async with tenant_tx(api.db(), tenant_id) as conn:
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

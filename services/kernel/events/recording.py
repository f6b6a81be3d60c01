"""Recording facts (sb.<tenant>.evt.recording.<name>) and the end marker of a call's recording chunks.

A recording is named by the caller's call id (one recording per call; it is also the contact's id). Its
audio travels from the media worker to the recording service on the chunk stream SB_RECORDING_CHUNKS
(sb.<tenant>.rec.<call id>.chunk, one spool record each, binary) closed by one `RecordingChunksEnd` on
sb.<tenant>.rec.<call id>.end; docs/recording.md says why a stream and not the object store.
"""

from __future__ import annotations

import uuid
from typing import Literal

import msgspec

from ..messages import Event

__all__ = [
    "ChunkLaw",
    "RecordingAvailable",
    "RecordingChunksEnd",
    "RecordingDeleted",
    "RecordingPaused",
    "RecordingResumed",
    "RecordingStarted",
]


ChunkLaw = Literal["PCMU", "PCMA"]


class RecordingChunksEnd(msgspec.Struct, kw_only=True, frozen=True):
    """No chunk of this call follows. `chunks` is how many the media worker published (0..chunks-1);
    `partial` when the recording was cut short (its media worker was lost: the recording service writes
    this marker itself, with the chunks it finds)."""

    tenant_id: uuid.UUID
    call_id: uuid.UUID
    law: ChunkLaw
    chunks: int
    started_at: float
    ended_at: float
    partial: bool = False
    reason: str = "stopped"  # stopped, media_worker_lost, reshipped
    v: int = 1


class RecordingStarted(Event, kw_only=True, frozen=True):
    domain = "recording"
    name = "started"
    recording_id: uuid.UUID


class RecordingPaused(Event, kw_only=True, frozen=True):
    domain = "recording"
    name = "paused"
    recording_id: uuid.UUID


class RecordingResumed(Event, kw_only=True, frozen=True):
    domain = "recording"
    name = "resumed"
    recording_id: uuid.UUID


class RecordingAvailable(Event, kw_only=True, frozen=True):
    """Stored, encrypted and indexed: it can be listed and fetched."""

    domain = "recording"
    name = "available"
    recording_id: uuid.UUID
    duration: float
    partial: bool
    sha256: str
    # "voicemail": a message a caller left (its id is the voicemail task's contact id); "call": a call's.
    kind: Literal["call", "voicemail"] = "call"


class RecordingDeleted(Event, kw_only=True, frozen=True):
    domain = "recording"
    name = "deleted"
    recording_id: uuid.UUID
    reason: Literal["request", "retention"]

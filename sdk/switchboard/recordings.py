"""Recordings in the SDK: `client.recordings` (list, iter, get, url, download, delete, hold, release). The
Call values live in _calls.py; download fetches the signed URL and streams the WAV to a file."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import httpx

from . import _calls
from ._core import Call
from .errors import ResponseError, error_from_response
from .models import Conversation, Page, Recording, RecordingUrl

__all__ = ["AsyncRecordings", "Progress", "Recordings"]

# Called with (bytes received so far, total bytes or None) while a download runs.
Progress = Callable[[int, int | None], None]


class _Runs(Protocol):
    _http: httpx.Client

    def _run(self, call: Call[Any]) -> Any: ...


class _AsyncRuns(Protocol):
    _http: httpx.AsyncClient

    async def _run(self, call: Call[Any]) -> Any: ...


def _error(response: httpx.Response, content: bytes) -> Exception:
    headers = {k.lower(): v for k, v in response.headers.items()}
    return error_from_response(response.status_code, headers, content, now=time.time())


class _Download:
    """Writes to `path`.part and renames at the end, checking the SHA-256 the server sent."""

    def __init__(self, path: Path, response: httpx.Response, progress: Progress | None) -> None:
        self.path = Path(path)
        self.part = self.path.with_name(self.path.name + ".part")
        self.expected = response.headers.get("x-content-sha256")
        length = response.headers.get("content-length")
        self.total = int(length) if length and length.isdigit() else None
        self.progress = progress
        self.received = 0
        self.digest = hashlib.sha256()
        self.file = open(self.part, "wb")

    def write(self, chunk: bytes) -> None:
        self.file.write(chunk)
        self.digest.update(chunk)
        self.received += len(chunk)
        if self.progress is not None:
            self.progress(self.received, self.total)

    def finish(self) -> Path:
        self.file.close()
        if self.expected and self.digest.hexdigest() != self.expected:
            self.part.unlink(missing_ok=True)
            raise ResponseError("the downloaded recording does not match its SHA-256; try again")
        os.replace(self.part, self.path)
        return self.path

    def abort(self) -> None:
        self.file.close()
        self.part.unlink(missing_ok=True)


class Recordings:
    """`client.recordings`: a recording's id is its contact's id."""

    def __init__(self, client: _Runs) -> None:
        self._client = client

    def list(
        self,
        *,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        queue: str | None = None,
        agent: str | None = None,
        number: str | None = None,
        contact: str | None = None,
        kind: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[Recording]:
        """One page, newest first; `number` matches the caller's or the dialled number; `kind` "talk",
        "consult" or "voicemail" (messages callers left); `contact` also finds the voicemails left on it."""
        call = _calls.recordings_page(
            since=since,
            until=until,
            queue=queue,
            agent=agent,
            number=number,
            contact=contact,
            kind=kind,
            limit=limit,
            cursor=cursor,
        )
        page: Page[Recording] = self._client._run(call)
        return page

    def iter(self, *, page_size: int | None = None, **filters: Any) -> Iterator[Recording]:
        cursor: str | None = None
        while True:
            page = self.list(limit=page_size, cursor=cursor, **filters)
            yield from page.items
            if not page.next_cursor or page.next_cursor == cursor:
                return
            cursor = page.next_cursor

    def get(self, id: str) -> Recording:
        found: Recording = self._client._run(_calls.recording_get(id))
        return found

    def conversation(self, id: str) -> Conversation:
        """Every recording of the contact's conversation in order (by the contact's id or a recording's)."""
        found: Conversation = self._client._run(_calls.recording_conversation(id))
        return found

    def url(self, id: str, *, format: str = "wav") -> RecordingUrl:
        """A signed URL (plays in a browser's <audio>, no key needed) valid for a few minutes; `format`
        "opus" for the Opus-in-Ogg copy (when the tenant keeps one)."""
        found: RecordingUrl = self._client._run(_calls.recording_url(id, format))
        return found

    def download(
        self, id: str, path: str | Path, *, progress: Progress | None = None, format: str = "wav"
    ) -> Path:
        """The recording's two-channel WAV (or with `format="opus"` its Opus-in-Ogg copy) into `path`
        (written whole or not at all; SHA-256 checked)."""
        signed = self.url(id, format=format)
        with self._client._http.stream("GET", signed.url) as response:
            if response.status_code >= 400:
                raise _error(response, response.read())
            download = _Download(Path(path), response, progress)
            try:
                for chunk in response.iter_bytes(64 * 1024):
                    download.write(chunk)
            except BaseException:
                download.abort()
                raise
        return download.finish()

    def delete(self, id: str) -> None:
        self._client._run(_calls.recording_delete(id))

    def hold(self, id: str) -> Recording:
        """A legal hold: no purge and no deletion until released."""
        found: Recording = self._client._run(_calls.recording_hold(id, True))
        return found

    def release(self, id: str) -> Recording:
        found: Recording = self._client._run(_calls.recording_hold(id, False))
        return found

    def settings(self) -> dict[str, Any]:
        """The tenant's policy: {"recording_percent": 0-100, "retention_days": int | None, "opus_copy": bool,
        "announcement": str | None}."""
        found: dict[str, Any] = self._client._run(_calls.recording_settings_get())
        return found

    def set_settings(
        self,
        *,
        recording_percent: int,
        retention_days: int | None,
        opus_copy: bool = False,
        announcement: str | None = None,
    ) -> dict[str, Any]:
        """Replace the whole policy (read `settings()` first to change one part)."""
        found: dict[str, Any] = self._client._run(
            _calls.recording_settings_put(recording_percent, retention_days, opus_copy, announcement)
        )
        return found

    def rotate_key(self) -> dict[str, Any]:
        """A new data key seals new recordings; older ones stay readable with theirs."""
        found: dict[str, Any] = self._client._run(_calls.recording_key_rotate())
        return found

    def pause(self, id: str) -> Recording:
        """Pause a live call's recording (a card number): nothing of the paused span is kept."""
        found: Recording = self._client._run(_calls.recording_pause(id, True))
        return found

    def resume(self, id: str) -> Recording:
        found: Recording = self._client._run(_calls.recording_pause(id, False))
        return found


class AsyncRecordings:
    """`async_client.recordings`: the same operations as Recordings, awaited."""

    def __init__(self, client: _AsyncRuns) -> None:
        self._client = client

    async def list(
        self,
        *,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        queue: str | None = None,
        agent: str | None = None,
        number: str | None = None,
        contact: str | None = None,
        kind: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[Recording]:
        call = _calls.recordings_page(
            since=since,
            until=until,
            queue=queue,
            agent=agent,
            number=number,
            contact=contact,
            kind=kind,
            limit=limit,
            cursor=cursor,
        )
        page: Page[Recording] = await self._client._run(call)
        return page

    async def iter(self, *, page_size: int | None = None, **filters: Any) -> AsyncIterator[Recording]:
        cursor: str | None = None
        while True:
            page = await self.list(limit=page_size, cursor=cursor, **filters)
            for item in page.items:
                yield item
            if not page.next_cursor or page.next_cursor == cursor:
                return
            cursor = page.next_cursor

    async def get(self, id: str) -> Recording:
        found: Recording = await self._client._run(_calls.recording_get(id))
        return found

    async def conversation(self, id: str) -> Conversation:
        found: Conversation = await self._client._run(_calls.recording_conversation(id))
        return found

    async def url(self, id: str, *, format: str = "wav") -> RecordingUrl:
        found: RecordingUrl = await self._client._run(_calls.recording_url(id, format))
        return found

    async def download(
        self, id: str, path: str | Path, *, progress: Progress | None = None, format: str = "wav"
    ) -> Path:
        signed = await self.url(id, format=format)
        async with self._client._http.stream("GET", signed.url) as response:
            if response.status_code >= 400:
                raise _error(response, await response.aread())
            download = _Download(Path(path), response, progress)
            try:
                async for chunk in response.aiter_bytes(64 * 1024):
                    download.write(chunk)
            except BaseException:
                download.abort()
                raise
        return download.finish()

    async def delete(self, id: str) -> None:
        await self._client._run(_calls.recording_delete(id))

    async def hold(self, id: str) -> Recording:
        found: Recording = await self._client._run(_calls.recording_hold(id, True))
        return found

    async def release(self, id: str) -> Recording:
        found: Recording = await self._client._run(_calls.recording_hold(id, False))
        return found

    async def settings(self) -> dict[str, Any]:
        found: dict[str, Any] = await self._client._run(_calls.recording_settings_get())
        return found

    async def set_settings(
        self,
        *,
        recording_percent: int,
        retention_days: int | None,
        opus_copy: bool = False,
        announcement: str | None = None,
    ) -> dict[str, Any]:
        call = _calls.recording_settings_put(recording_percent, retention_days, opus_copy, announcement)
        found: dict[str, Any] = await self._client._run(call)
        return found

    async def rotate_key(self) -> dict[str, Any]:
        found: dict[str, Any] = await self._client._run(_calls.recording_key_rotate())
        return found

    async def pause(self, id: str) -> Recording:
        found: Recording = await self._client._run(_calls.recording_pause(id, True))
        return found

    async def resume(self, id: str) -> Recording:
        found: Recording = await self._client._run(_calls.recording_pause(id, False))
        return found

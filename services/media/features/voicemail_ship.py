"""Ships a finished voicemail to the recording service through JetStream (recording/voicemail_bucket.py)
before call.record_finished is published, then removes the local file.

It sits in front of the SIP edge's event publishing, in the call's ordered chain: call.record_finished
still goes out before the call.ended that follows a hang-up (the IVR reads them in that order). NATS away
for longer than SHIP_S: the file stays where it is and the event goes out anyway; a recording service on
the same host still reads the file (or seals it at its next start, services/recording/voicemails.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from nats.js import JetStreamContext
from nats.js.object_store import ObjectStore

from services.kernel.events import CallRecordFinished
from services.kernel.log import get_logger
from services.kernel.messages import Event
from services.kernel.waits import within
from services.recording.voicemail_bucket import open_voicemail_bucket, voicemail_object

from .voicemail import resolve_under

__all__ = ["VoicemailShipper"]

log = get_logger()
SHIP_S = 10.0
RETRY_MIN_S = 0.2
RETRY_MAX_S = 2.0


class VoicemailShipper:
    def __init__(
        self,
        js: JetStreamContext,
        data_dir: Path | None,
        publish: Callable[[Event], Awaitable[None]],
        *,
        replicas: int = 1,
    ) -> None:
        self.js, self.data_dir, self._publish, self.replicas = js, data_dir, publish, replicas
        self._bucket: ObjectStore | None = None

    async def publish(self, event: Event) -> None:
        """The edge's publish: a finished message is shipped first."""
        if isinstance(event, CallRecordFinished) and event.error is None and event.file:
            await self.ship(event)
        await self._publish(event)

    async def ship(self, event: CallRecordFinished) -> bool:
        """The message's bytes stored in the bucket, then its local file removed; False if it stays."""
        path = resolve_under(self.data_dir, event.file) if self.data_dir is not None else None
        if path is None or not await asyncio.to_thread(path.is_file):
            return False
        name = voicemail_object(event.tenant_id, event.call_id)
        try:
            await within(SHIP_S, f"voicemail {name} to be stored", self._put(name, path))
        except Exception as exc:
            log.error("voicemail_ship_failed", object=name, error=f"{type(exc).__name__}: {exc}"[:300])
            return False
        await asyncio.to_thread(path.unlink, missing_ok=True)
        log.info("voicemail_shipped", object=name)
        return True

    async def _put(self, name: str, path: Path) -> None:
        wait = RETRY_MIN_S
        while True:
            try:
                if self._bucket is None:
                    self._bucket = await open_voicemail_bucket(self.js, self.replicas)
                with path.open("rb") as f:
                    await self._bucket.put(name, f)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # NATS away or the bucket full: try again until SHIP_S runs out
                log.warning("voicemail_put_failed", object=name, error=f"{type(exc).__name__}: {exc}"[:300])
                await asyncio.sleep(wait)
                wait = min(wait * 2, RETRY_MAX_S)

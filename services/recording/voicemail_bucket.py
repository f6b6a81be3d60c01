"""The JetStream object store bucket that carries voicemails from media to the recording service, so the
two need no shared disk (on Kubernetes each pod's data directory is its own emptyDir).

An object store rather than the chunk stream (SB_RECORDING_CHUNKS): a message may be up to an hour long,
57.6 MB, far above NATS's 1 MB message limit, and the object store already cuts it into chunks, checks its
SHA-256 on read, replaces an object put again under the same name (a re-sent message is stored once) and
removes one in a single call. It is file-backed with no consumer, so a message waits there through a
recording-service outage. The tenant is in each object's name: `<tenant>/<call>.wav`.
"""

from __future__ import annotations

import uuid

from nats.js import JetStreamContext
from nats.js.api import ObjectStoreConfig, StorageType
from nats.js.errors import NotFoundError
from nats.js.object_store import ObjectStore

__all__ = ["VOICEMAIL_BUCKET", "open_voicemail_bucket", "voicemail_object"]

VOICEMAIL_BUCKET = "sb_voicemails"


def voicemail_object(tenant_id: uuid.UUID, call_id: uuid.UUID) -> str:
    """The object holding the message left on `call_id` (parsed ids: nothing else can be named)."""
    return f"{uuid.UUID(str(tenant_id))}/{uuid.UUID(str(call_id))}.wav"


async def open_voicemail_bucket(js: JetStreamContext, replicas: int = 1) -> ObjectStore:
    """The bucket, created by whichever side comes first (an identical creation by the other succeeds)."""
    try:
        return await js.object_store(VOICEMAIL_BUCKET)
    except NotFoundError:
        return await js.create_object_store(
            VOICEMAIL_BUCKET,
            config=ObjectStoreConfig(
                description="voicemails on their way from media to the recording service",
                storage=StorageType.FILE,
                replicas=replicas,
            ),
        )

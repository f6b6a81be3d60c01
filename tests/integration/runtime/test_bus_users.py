"""Each service's NATS user is refused the subjects of other services, on the real embedded nats-server that
`switchboard up` runs (services/runtime/bususers.py; issue 23 item 5)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import nats
import pytest

from services.kernel.subjects import inbox_prefix
from services.kernel.waits import flushed
from services.recording.voicemail_bucket import VOICEMAIL_BUCKET, open_voicemail_bucket, voicemail_object
from services.runtime.bususers import VOICEMAIL_STREAM, VOICEMAIL_SUBJECTS
from services.runtime.embedded import EmbeddedNats, Secrets

TENANT = str(uuid.UUID(int=23))
CALL = str(uuid.UUID(int=5))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNats]:
    data = tmp_path_factory.mktemp("bususers")
    nats_server = EmbeddedNats(Path(data), Secrets.load_or_create(Path(data)))
    nats_server.start()
    yield nats_server
    nats_server.stop()


class Client:
    """A connection that keeps the server's permission errors (nats-py hands them to error_cb)."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.nc: nats.NATS | None = None

    async def connect(self, url: str) -> nats.NATS:
        async def on_error(exc: Exception) -> None:
            self.errors.append(str(exc))

        self.nc = await _service(url, error_cb=on_error)
        return self.nc

    async def refused(self, what: str) -> None:
        deadline = asyncio.get_running_loop().time() + 15
        while not any(what.lower() in e.lower() for e in self.errors):
            assert asyncio.get_running_loop().time() < deadline, f"not refused: {what}; errors {self.errors}"
            await asyncio.sleep(0.02)


async def _service(url: str, **options: object) -> nats.NATS:
    """A connection as a service makes it (services.kernel.bus.connect): its replies on its own inbox."""
    prefix = inbox_prefix(urlsplit(url).username)
    return await nats.connect(url, inbox_prefix=prefix, allow_reconnect=False, connect_timeout=5, **options)  # type: ignore[arg-type]


async def _heard(admin: nats.NATS, subject: str) -> nats.aio.subscription.Subscription:
    sub = await admin.subscribe(subject)
    await flushed(admin)
    return sub


def test_media_cannot_publish_routings_decisions_nor_answer_its_commands(server: EmbeddedNats) -> None:
    async def scenario() -> None:
        admin = await nats.connect(server.url)
        watch = await _heard(admin, f"sb.{TENANT}.evt.>")
        media = Client()
        nc = await media.connect(server.service_url("media"))
        offered = f"sb.{TENANT}.evt.contact.offered"
        await nc.publish(offered, b"forged")
        await nc.publish(f"sb.{TENANT}.evt.call.started", b"allowed")  # its own domain, sent after
        await media.refused(f'Permissions Violation for Publish to "{offered}"')
        msg = await watch.next_msg(timeout=15)
        assert (msg.subject, msg.data) == (
            f"sb.{TENANT}.evt.call.started",
            b"allowed",
        )  # the forged one never came
        await nc.publish(f"sb.sys.routing.journal.{TENANT}", b"forged")  # routing's own record
        await media.refused('Permissions Violation for Publish to "sb.sys.routing.journal')
        await nc.subscribe("sb.*.cmd.routing.>")
        await media.refused('Permissions Violation for Subscription to "sb.*.cmd.routing.>"')
        await nc.subscribe("sb.sys.routing.>")
        await media.refused('Permissions Violation for Subscription to "sb.sys.routing.>"')
        # Media sends no command: routing's are not its to send (checked as the server maps them onto
        # routing's partitions).
        await nc.publish(f"sb.{TENANT}.cmd.routing.enqueue", b"enqueue")
        await media.refused('Permissions Violation for Publish to "sb.sys.routing.cmd.')
        # Nothing outside its subjects: not every subject at once, not another service's replies.
        for wide in ("sb.>", ">", "_INBOX.>", "_INBOX.recording.>"):
            await nc.subscribe(wide)
            await media.refused(f'Permissions Violation for Subscription to "{wide}"')
        assert (await nc.jetstream(timeout=5).account_info()).streams >= 0  # replies reach its own inbox
        # Its own commands are its to serve.
        own = await nc.subscribe(f"sb.*.cmd.media.*.{CALL}")
        await flushed(nc)
        await admin.publish(f"sb.{TENANT}.cmd.media.hangup.{CALL}", b"x")
        assert (await own.next_msg(timeout=15)).data == b"x"
        await nc.close()
        await admin.close()

    asyncio.run(scenario())


def test_the_api_cannot_read_recordings_chunks(server: EmbeddedNats) -> None:
    async def scenario() -> None:
        admin = await nats.connect(server.url)
        js = admin.jetstream()
        await js.add_stream(name="SB_RECORDING_CHUNKS", subjects=["sb.*.rec.>"])
        api = Client()
        nc = await api.connect(server.service_url("api"))
        await nc.subscribe("sb.*.rec.>")
        await api.refused('Permissions Violation for Subscription to "sb.*.rec.>"')
        heard = await nc.subscribe(f"sb.{TENANT}.evt.>")  # events are the API's to hear, chunks are not
        await flushed(nc)
        media = await _service(server.service_url("media"))
        await media.jetstream().publish(f"sb.{TENANT}.rec.{CALL}.chunk", b"audio")  # media writes them
        await media.publish(f"sb.{TENANT}.evt.call.ended", b"after")
        assert (await heard.next_msg(timeout=15)).subject == f"sb.{TENANT}.evt.call.ended"
        with pytest.raises((nats.errors.Error, TimeoutError)):  # nor does media read what it wrote
            await media.jetstream(timeout=1).get_msg("SB_RECORDING_CHUNKS", seq=1)
        with pytest.raises((nats.errors.Error, TimeoutError)):  # refused before JetStream sees it: no answer
            await nc.jetstream(timeout=1).get_msg("SB_RECORDING_CHUNKS", seq=1)
        await api.refused('Permissions Violation for Publish to "$JS.API.STREAM.MSG.GET.SB_RECORDING_CHUNKS"')
        with pytest.raises((nats.errors.Error, TimeoutError)):
            await nc.jetstream(timeout=1).pull_subscribe(f"sb.{TENANT}.rec.>", stream="SB_RECORDING_CHUNKS")
        await api.refused('Permissions Violation for Publish to "$JS.API.CONSUMER.CREATE.SB_RECORDING_CHUNKS')
        await nc.publish(f"sb.{TENANT}.rec.{CALL}.chunk", b"forged")
        await api.refused(f'Permissions Violation for Publish to "sb.{TENANT}.rec.')
        # The recording service reads them.
        recording = await _service(server.service_url("recording"))
        got = await recording.jetstream().get_msg("SB_RECORDING_CHUNKS", seq=1)
        assert got.data == b"audio"
        for conn in (recording, nc, media, admin):
            await conn.close()

    asyncio.run(scenario())


def test_only_media_and_recording_reach_the_voicemail_bucket(server: EmbeddedNats) -> None:
    async def scenario() -> None:
        media = await _service(server.service_url("media"))
        bucket = await open_voicemail_bucket(media.jetstream())
        name = voicemail_object(uuid.UUID(TENANT), uuid.UUID(CALL))
        await bucket.put(name, b"message")  # media writes it
        ivr = Client()
        nc = await ivr.connect(server.service_url("ivr"))
        await nc.subscribe(VOICEMAIL_SUBJECTS)
        await ivr.refused(f'Permissions Violation for Subscription to "{VOICEMAIL_SUBJECTS}"')
        with pytest.raises((nats.errors.Error, TimeoutError)):
            await (await nc.jetstream(timeout=1).object_store(VOICEMAIL_BUCKET)).get(name)
        await ivr.refused(f'Permissions Violation for Publish to "$JS.API.STREAM.INFO.{VOICEMAIL_STREAM}')
        # The recording service reads and removes it.
        recording = await _service(server.service_url("recording"))
        held = await recording.jetstream().object_store(VOICEMAIL_BUCKET)
        assert (await held.get(name)).data == b"message"
        await held.delete(name)
        for conn in (recording, nc, media):
            await conn.close()

    asyncio.run(scenario())


def test_a_wrong_or_foreign_password_is_refused(server: EmbeddedNats, tmp_path: Path) -> None:
    other = EmbeddedNats(tmp_path, Secrets.load_or_create(tmp_path), port=server.port)
    assert other.service_url("api") != server.service_url("api")  # random per data dir

    async def scenario() -> None:
        for url in (other.service_url("api"), server.service_url("api").replace("api:", "media:")):
            with pytest.raises(nats.errors.Error):
                await nats.connect(url, allow_reconnect=False, connect_timeout=3, max_reconnect_attempts=0)

    asyncio.run(scenario())

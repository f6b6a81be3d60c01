"""The media service: configuration, the SIP edge, and the NATS command adapter.

Commands arrive on sb.<tenant>.cmd.media.<name> (request/reply) and are idempotent by command id: a
repeated id gets the first reply again without acting twice. Events go out through Bus.publish.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections import OrderedDict

import msgspec
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from services.kernel import events as ev
from services.kernel.bus import Bus
from services.kernel.config import Settings
from services.kernel.db import create_pool
from services.kernel.log import get_logger
from services.kernel.messages import Reply, decode, encode
from services.kernel.subjects import tenant_of
from services.media.call import CallState
from services.media.edge import SipEdge
from services.media.leg import EdgeConfig, Leg
from services.media.prompts import APOLOGY, PromptError, PromptStore
from services.media.store import Store

__all__ = ["MediaService", "edge_config", "main"]

log = get_logger()

COMMANDS: dict[str, type[ev.MediaCommand]] = {
    cls.name: cls
    for cls in (
        ev.MediaAnswer,
        ev.MediaPlay,
        ev.MediaCollect,
        ev.MediaStop,
        ev.MediaHold,
        ev.MediaUnhold,
        ev.MediaHangup,
        ev.MediaOriginate,
    )
}
REPLAY_MEMORY = 10_000


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    try:
        return int(raw) if raw else default
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not an integer") from None


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    try:
        return float(raw) if raw else default
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number") from None


def edge_config(settings: Settings) -> EdgeConfig:
    """Media settings: the kernel's bind host and SIP port, plus SB_RTP_PORT_MIN/MAX, SB_MEDIA_MAX_CALLS,
    SB_MEDIA_MAX_SETUP, SB_MEDIA_MAX_LAG_MS, SB_MEDIA_MAX_CPU, SB_SIP_RATE / SB_SIP_BURST / SB_SIP_BAN_AFTER / SB_SIP_BAN_SECONDS and SB_SIP_REALM."""
    secret = hashlib.sha256(f"sip-digest|{settings.token_secret or os.urandom(16).hex()}".encode()).digest()
    return EdgeConfig(
        host=settings.bind_host,
        port=settings.sip_port,
        rtp_low=_env_int("SB_RTP_PORT_MIN", 20000),
        rtp_high=_env_int("SB_RTP_PORT_MAX", 30000),
        max_calls=_env_int("SB_MEDIA_MAX_CALLS", 1000),
        max_setup=_env_int("SB_MEDIA_MAX_SETUP", 200),
        max_lag=_env_float("SB_MEDIA_MAX_LAG_MS", 250.0) / 1000.0,
        max_cpu=_env_float("SB_MEDIA_MAX_CPU", 0.95),
        rate=_env_float("SB_SIP_RATE", 50.0),
        burst=_env_float("SB_SIP_BURST", 100.0),
        ban_after=_env_int("SB_SIP_BAN_AFTER", 50),
        ban_seconds=_env_float("SB_SIP_BAN_SECONDS", 60.0),
        realm=os.environ.get("SB_SIP_REALM", "switchboard"),
        auth_secret=secret,
    )


class MediaService:
    def __init__(self, edge: SipEdge, bus: Bus) -> None:
        self.edge = edge
        self.bus = bus
        self._replies: OrderedDict[uuid.UUID, Reply] = OrderedDict()
        self._subs: list[Subscription] = []

    async def start(self) -> None:
        # Several media processes may run: `originate` goes to one of them (queue group); every other
        # command reaches all of them and only the process that holds the call answers.
        nc = self.bus.nc
        self._subs = [
            await nc.subscribe("sb.*.cmd.media.originate", queue="media", cb=self._on_originate),
            await nc.subscribe("sb.*.cmd.media.*", cb=self._on_call_command),
            # Cached number routes are dropped when the API changes a tenant's numbers.
            await nc.subscribe("sb.*.evt.config.changed", cb=self._on_config_changed),
        ]

    async def _on_config_changed(self, msg: Msg) -> None:
        try:
            change = decode(msg.data, ev.ConfigChanged)
        except (msgspec.ValidationError, msgspec.DecodeError):
            log.warning("bad_config_changed", subject=msg.subject)
            return
        if change.kind == "number":
            self.edge.store.invalidate(change.tenant_id)

    async def stop(self) -> None:
        for sub in self._subs:
            await sub.unsubscribe()

    async def _on_originate(self, msg: Msg) -> None:
        await self._on_msg(msg)

    async def _on_call_command(self, msg: Msg) -> None:
        if not msg.subject.endswith(".originate"):  # the queue-group subscription takes those
            await self._on_msg(msg)

    async def _on_msg(self, msg: Msg) -> None:
        try:
            reply = await self._handle(msg)
        except Exception as exc:
            log.exception("media_command_failed", subject=msg.subject)
            reply = Reply(ok=False, error=f"internal error: {type(exc).__name__}", code="internal")
        if reply is not None and msg.reply:
            await msg.respond(encode(reply))

    async def _handle(self, msg: Msg) -> Reply | None:
        name = msg.subject.rsplit(".", 1)[-1]
        kind = COMMANDS.get(name)
        if kind is None:
            return Reply(ok=False, error=f"unknown media command {name!r}", code="unknown_command")
        try:
            command = decode(msg.data, kind)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            return Reply(ok=False, error=f"invalid {name} command: {exc}", code="invalid")
        if tenant_of(msg.subject) != command.tenant_id:
            return Reply(
                ok=False, error="the subject's tenant and the command's tenant differ", code="invalid"
            )
        previous = self._replies.get(command.id)
        if previous is not None:
            return previous
        reply = await self.execute(command)
        if reply is None:
            return None
        self._replies[command.id] = reply
        while len(self._replies) > REPLAY_MEMORY:
            self._replies.popitem(last=False)
        return reply

    def _leg(self, command: ev.MediaCommand) -> Leg | None:
        leg = self.edge.legs.get(command.call_id)
        if leg is None or leg.call.tenant_id != command.tenant_id:
            return None  # another tenant's call is indistinguishable from no call
        return leg

    async def execute(self, command: ev.MediaCommand) -> Reply | None:
        """The reply, or None when this process does not hold the call (another one answers)."""
        edge = self.edge
        if isinstance(command, ev.MediaOriginate):
            if command.call_id in edge.legs:
                return Reply(ok=False, error="call id already in use", code="conflict")
            error = await edge.originate(
                call_id=command.call_id,
                tenant_id=command.tenant_id,
                to=command.to,
                caller_id=command.caller_id,
                trunk_name=command.trunk,
            )
            return Reply(
                ok=error is None,
                error=error,
                code="originate_failed" if error else None,
                data={"call_id": str(command.call_id)},
            )
        leg = self._leg(command)
        if leg is None:
            return None
        if leg.call.state is CallState.ENDED:
            return Reply(ok=False, error="the call has ended", code="ended")
        now = edge.now()
        call = leg.call
        if isinstance(command, ev.MediaAnswer):
            ok = edge.answer(leg)
            return Reply(
                ok=ok, error=None if ok else "the call cannot be answered now", code=None if ok else "state"
            )
        if isinstance(command, ev.MediaHangup):
            edge.hangup(leg, command.cause)
            return Reply(ok=True)
        if isinstance(command, ev.MediaStop):
            edge.emit(call.stop(now))
            return Reply(ok=True)
        if isinstance(command, ev.MediaHold | ev.MediaUnhold):
            ok = edge.reinvite(leg, hold=isinstance(command, ev.MediaHold))
            return Reply(
                ok=ok, error=None if ok else "the call is not answered", code=None if ok else "state"
            )
        try:
            if isinstance(command, ev.MediaPlay):
                if command.tone == "moh":
                    samples = edge.prompts.moh
                elif command.text:
                    samples = await edge.prompts.text(command.text, voice=command.voice, rate=command.rate)
                elif command.file:
                    samples = edge.prompts.file(command.file)
                else:
                    return Reply(ok=False, error="play needs text, file or tone", code="invalid")
                edge.emit(
                    call.play(
                        samples, play_id=command.id, interruptible=command.interruptible, loop=command.loop
                    )
                )
                return Reply(ok=True)
            if isinstance(command, ev.MediaCollect):
                if not 0 <= command.min_digits <= command.max_digits <= 64:
                    return Reply(ok=False, error="need 0 <= min_digits <= max_digits <= 64", code="invalid")
                prompt = None
                if command.text:
                    prompt = await edge.prompts.text(command.text, voice=command.voice)
                elif command.file:
                    prompt = edge.prompts.file(command.file)
                edge.emit(
                    call.collect(
                        collect_id=command.id,
                        min_digits=command.min_digits,
                        max_digits=command.max_digits,
                        terminator=command.terminator,
                        first_digit_timeout=command.first_digit_timeout,
                        inter_digit_timeout=command.inter_digit_timeout,
                        now=now,
                        prompt=prompt,
                    )
                )
                return Reply(ok=True)
        except PromptError as exc:
            return Reply(ok=False, error=str(exc), code="prompt")
        return Reply(ok=False, error="unsupported command", code="unknown_command")


async def main(settings: Settings, bus: Bus, stop: asyncio.Event) -> None:
    # Connections are opened up front: a new one costs tens of ms in the middle of call setup.
    pool = await create_pool(settings.database_url, min_size=5, max_size=10)
    prompts = PromptStore(settings.data_dir)
    edge = SipEdge(edge_config(settings), store=Store(pool), prompts=prompts, publish=bus.publish)
    await edge.start()
    service = MediaService(edge, bus)
    await service.start()
    # The apology is rendered once (espeak-ng, cached on disk) before the first caller needs it.
    warmup = asyncio.get_running_loop().create_task(prompts.warm([APOLOGY]))

    async def shutdown() -> None:
        await stop.wait()
        warmup.cancel()
        await service.stop()
        await edge.stop()
        await pool.close()

    asyncio.get_running_loop().create_task(shutdown())

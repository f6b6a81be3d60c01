"""BusParser (services/kernel/batches.py) reads the NATS protocol as nats-py's own parser does, whatever
the cuts between reads: the same messages, in the same order, with the same subjects, replies, headers
and payloads, and the same PINGs, PONGs, INFOs and errors between them; a raw pull's inbox gets its
deliveries as bytes and no other subscription's."""

from __future__ import annotations

import asyncio
import itertools
import random
from typing import Any

import pytest
from nats.errors import ProtocolError
from nats.protocol.parser import Parser

from services.kernel.batches import BusParser

RAW_SID = 7


def _msg(subject: str, sid: int, payload: bytes, reply: str = "", headers: bytes = b"") -> bytes:
    line = " ".join(x for x in (subject, str(sid), reply) if x)
    if not headers:
        return f"MSG {line} {len(payload)}\r\n".encode() + payload + b"\r\n"
    size = len(headers) + len(payload)
    return f"HMSG {line} {len(headers)} {size}\r\n".encode() + headers + payload + b"\r\n"


def _ack(n: int) -> str:
    return f"$JS.ACK.SB_EVENTS.reporting.1.{10 + n}.{n}.1796641341529259200.0"


STREAM = b"".join(
    [
        b'INFO {"server_id":"x","max_payload":1048576}\r\n',
        _msg("sb.t.evt.a.b", 3, b"hello"),
        _msg("sb.t.evt.a.b", RAW_SID, b'{"n":1}', _ack(1), b"NATS/1.0\r\nNats-Msg-Id: 1\r\n\r\n"),
        b"+OK\r\n",
        _msg("_INBOX.x", RAW_SID, b"", headers=b"NATS/1.0 408 Request Timeout\r\n\r\n"),
        b"PING\r\n",
        _msg("reply.to", 4, b"", "_INBOX.r"),
        _msg("sb.t.evt.a.b", RAW_SID, b'{"n":2}', _ack(2), b"NATS/1.0\r\nNats-Msg-Id: 2\r\n\r\n"),
        b"PONG\r\n",
        b"-ERR 'Permissions Violation for Subscription to foo'\r\n",
        _msg("other", 5, b"{}", "reply", b"NATS/1.0\r\n\r\n"),
        _msg("sb.t.evt.a.b", RAW_SID, b'{"n":3}', _ack(3)),
        _msg("sb.t.evt.a.b", RAW_SID, b"x" * 300, _ack(4), b"NATS/1.0\r\nNats-Msg-Id: 4\r\n\r\n"),
    ]
)


class Recorder:
    """What a client is told by its parser, in order."""

    def __init__(self) -> None:
        self.seen: list[tuple[Any, ...]] = []
        self.raw_sinks = {RAW_SID: self._raw}

    def _raw(self, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None:
        # Headers are given for statuses (no reply); a delivery's own are not needed.
        self.seen.append(("msg", RAW_SID, subject, reply, data, headers if not reply else None))

    async def _process_msg(self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: Any) -> None:
        if sid in self.raw_sinks:
            self.raw_sinks[sid](subject, reply, data, headers)
            return
        self.seen.append(("msg", sid, subject, reply, data, headers))

    async def _process_ping(self) -> None:
        self.seen.append(("ping",))

    async def _process_pong(self) -> None:
        self.seen.append(("pong",))

    async def _process_info(self, info: dict[str, Any]) -> None:
        self.seen.append(("info", info))

    async def _process_err(self, err: str) -> None:
        self.seen.append(("err", err))


async def _feed(parser_class: type[Parser], chunks: list[bytes]) -> list[tuple[Any, ...]]:
    nc = Recorder()
    parser = parser_class(nc)
    for chunk in chunks:
        await parser.parse(chunk)
    assert not parser.buf
    return nc.seen


def _cut(data: bytes, cuts: list[int]) -> list[bytes]:
    edges = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


def test_the_same_as_nats_py_at_every_cut() -> None:
    async def run() -> None:
        expected = await _feed(Parser, [STREAM])
        assert len([s for s in expected if s[0] == "msg"]) == 8
        assert await _feed(BusParser, [STREAM]) == expected
        for cut in range(1, len(STREAM)):  # every single cut, then many random double and triple cuts
            assert await _feed(BusParser, _cut(STREAM, [cut])) == expected, cut
        rng = random.Random(15)
        for _ in range(300):
            cuts = rng.sample(range(1, len(STREAM)), rng.randint(2, 12))
            assert await _feed(BusParser, _cut(STREAM, cuts)) == expected, cuts
        byte_by_byte = [STREAM[i : i + 1] for i in range(len(STREAM))]
        assert await _feed(BusParser, byte_by_byte) == expected

    asyncio.run(run())


def test_a_malformed_message_line_is_a_protocol_error() -> None:
    async def run() -> None:
        with pytest.raises(ProtocolError):
            await _feed(BusParser, [b"MSG subject notasid 5\r\nhello\r\n"])
        with pytest.raises(ProtocolError):
            await _feed(BusParser, [b"HMSG subject 1 x\r\nhello\r\n"])

    asyncio.run(run())


def test_a_deliverys_numbers_are_read_from_both_forms_of_its_ack_subject() -> None:
    from services.kernel.batches import _ack_numbers

    assert _ack_numbers(b"$JS.ACK.SB_EVENTS.reporting.2.1041.77.1733500000000000000.3") == (2, 1041, 77)
    assert _ack_numbers(b"$JS.ACK.hub.ACCHASH.SB_EVENTS.reporting.1.1041.78.1733500000000000000.0.tok") == (
        1,
        1041,
        78,
    )


def _held_ack(delivered: int, sseq: int, cseq: int) -> bytes:
    return f"$JS.ACK.SB_EVENTS.reporting.{delivered}.{sseq}.{cseq}.1733500000000000000.0".encode()


def test_a_batchs_ack_is_held_after_a_gap_exactly_as_when_every_delivery_is_read() -> None:
    """BatchConsumer._gaps reads only a batch's first and last ack subjects when they show no gap: random
    runs of deliveries (gaps between and inside batches, redeliveries, a consumer made again) give the same
    answers and the same held sequence as reading every delivery (the rule as first written)."""
    from services.kernel.batches import BatchConsumer, _ack_numbers

    def reference(state: dict[str, Any], msgs: list[tuple[bytes, bytes, bytes]]) -> bool:
        for _, reply, _ in msgs:
            delivered, sseq, cseq = _ack_numbers(reply)
            if state["last"] and cseq > state["last"] + 1:
                state["hold"] = max(state["hold"] or 0, sseq)
            elif state["hold"] is not None and delivered > 1 and sseq >= state["hold"]:
                state["hold"] = None
            state["last"] = cseq
        return state["hold"] is None

    rng = random.Random(15)
    held = 0
    for _ in range(300):
        consumer = BatchConsumer(None, [], durable="d", handler=None)  # type: ignore[arg-type]
        state: dict[str, Any] = {"last": 0, "hold": None}
        cseq, sseq = 0, 100
        for _ in range(12):
            if rng.random() < 0.1:
                cseq = 0  # the consumer made again: numbering starts anew
            msgs = []
            for _ in range(rng.randint(1, 6)):
                cseq += 1 + (rng.random() < 0.08)  # now and then a delivery lost on the way
                sseq += 1
                delivered, at = (2, sseq - rng.randint(0, 8)) if rng.random() < 0.1 else (1, sseq)
                msgs.append((b"s", _held_ack(delivered, at, cseq), b""))
            expected = reference(state, msgs)
            assert consumer._gaps(msgs) == expected
            assert (consumer._last_cseq, consumer._hold_until) == (state["last"], state["hold"])
            held += not expected
    assert held > 50  # the runs did hold acks, not only pass the quick check

# RTCP of one two-way stream, shared by the SIP legs' RtpSession and the WebRTC legs' SrtpMedia: the
# compound report we send (SR once we have sent, else RR; SDES CNAME; BYE at the end), what the peer's
# reports tell our statistics, and the quality figures of a call.quality event. Sans-IO: `now` is the
# monotonic clock of the statistics, `wallclock` the Unix time for the SR's NTP field.
from __future__ import annotations

from dataclasses import dataclass

from services.media.rtp.mos import estimate
from services.media.rtp.rtcp import (
    Goodbye,
    ReceiverReport,
    ReportBlock,
    RtcpPacket,
    SenderReport,
    SourceDescription,
    serialize_compound,
)
from services.media.rtp.stats import ReceiverStats, SenderStats

__all__ = ["LegQuality", "compound_report", "stream_quality", "take_reports"]


@dataclass(frozen=True, slots=True)
class LegQuality:
    """The fields of services.kernel.events.CallQuality that a leg measures."""

    mos: float
    r: float
    jitter_ms: float
    loss_percent: float
    rtt_ms: float | None
    packets_received: int
    packets_sent: int


def compound_report(
    *,
    ssrc: int,
    cname: str,
    rx: ReceiverStats,
    tx: SenderStats,
    remote_ssrc: int | None,
    now: float,
    wallclock: float,
    bye: bool = False,
) -> bytes:
    blocks: tuple[ReportBlock, ...] = ()
    if remote_ssrc is not None and rx.received:
        blocks = (rx.report_block(remote_ssrc, now),)
    first: SenderReport | ReceiverReport
    if tx.has_sent:
        first = tx.sender_report(ssrc, now, wallclock, blocks)
    else:
        first = ReceiverReport(ssrc, blocks)
    packets: list[RtcpPacket] = [first, SourceDescription.cname(ssrc, cname)]
    if bye:
        packets.append(Goodbye((ssrc,)))
    return serialize_compound(packets)


def take_reports(
    packets: list[RtcpPacket], *, ssrc: int, rx: ReceiverStats, tx: SenderStats, now: float
) -> None:
    """The peer's SRs (for our report blocks' LSR/DLSR) and its report blocks about our SSRC (RTT)."""
    for packet in packets:
        if isinstance(packet, SenderReport):
            rx.on_sender_report(packet.ntp_timestamp, now)
        if isinstance(packet, SenderReport | ReceiverReport):
            for block in packet.reports:
                if block.ssrc == ssrc:
                    tx.on_report_block(block, now)


def stream_quality(
    rx: ReceiverStats, tx: SenderStats, *, jitter_buffer_s: float, one_way_without_rtt_ms: float
) -> LegQuality:
    summary = rx.summary()
    rtt = tx.rtt
    loss = 100.0 * summary.loss_fraction
    q = estimate(
        one_way_delay_ms=rtt * 500.0 if rtt is not None else one_way_without_rtt_ms,
        jitter_ms=summary.jitter_ms,
        loss_percent=loss,
        jitter_buffer_ms=jitter_buffer_s * 1000.0,
    )
    return LegQuality(
        mos=q.mos,
        r=q.r,
        jitter_ms=round(summary.jitter_ms, 2),
        loss_percent=round(loss, 3),
        rtt_ms=round(rtt * 1000.0, 2) if rtt is not None else None,
        packets_received=summary.received,
        packets_sent=tx.packet_count,
    )

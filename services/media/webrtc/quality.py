# Call quality of a WebRTC leg from aiortc's getStats(): jitter and loss of what we receive (inbound-rtp),
# round-trip time and the peer's view of our stream (remote-inbound-rtp, from its RTCP receiver reports),
# turned into the `call.quality` figures with the E-model MOS of services/media/rtp/mos.py. Pure: the
# stats report goes in, figures come out.
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.media.rtp.mos import estimate
from services.media.rtp.reports import LegQuality

__all__ = ["LegQuality", "quality_from_stats"]


def quality_from_stats(report: Mapping[str, Any], *, clock_rate: int = 8000) -> LegQuality:
    """`report` is an RTCStatsReport (id -> stats object). aiortc reports inbound jitter in RTP timestamp
    units (RFC 3550), not seconds as the W3C dictionary says: `clock_rate` converts it."""
    received = lost = sent = 0
    jitter_units = 0.0
    rtt: float | None = None
    remote_fraction = 0.0
    for stats in report.values():
        kind = getattr(stats, "type", "")
        if kind == "inbound-rtp":
            received += int(stats.packetsReceived)
            lost += max(0, int(stats.packetsLost))
            jitter_units = max(jitter_units, float(stats.jitter))
        elif kind == "outbound-rtp":
            sent += int(stats.packetsSent)
        elif kind == "remote-inbound-rtp":
            if stats.roundTripTime is not None and stats.roundTripTime > 0:
                rtt = float(stats.roundTripTime) if rtt is None else max(rtt, float(stats.roundTripTime))
            remote_fraction = max(remote_fraction, float(stats.fractionLost or 0.0))
    expected = received + lost
    loss_percent = 100.0 * lost / expected if expected else 0.0
    # The worse of the two directions: what we lose receiving, or what the peer reports losing of ours.
    loss_percent = max(loss_percent, 100.0 * remote_fraction)
    jitter_ms = 1000.0 * jitter_units / clock_rate
    rtt_ms = None if rtt is None else 1000.0 * rtt
    # Without an RTT yet, assume a LAN-ish 20 ms one way rather than pretending there is no delay.
    one_way = rtt_ms / 2 if rtt_ms is not None else 20.0
    q = estimate(one_way_delay_ms=one_way, jitter_ms=jitter_ms, loss_percent=loss_percent)
    return LegQuality(
        mos=q.mos,
        r=q.r,
        jitter_ms=round(jitter_ms, 2),
        loss_percent=round(loss_percent, 3),
        rtt_ms=None if rtt_ms is None else round(rtt_ms, 2),
        packets_received=received,
        packets_sent=sent,
    )

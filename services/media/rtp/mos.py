# Call quality estimate: the ITU-T G.107 E-model reduced to the terms a media server can measure
# (delay, jitter, packet loss), as network monitors commonly do, mapped to a MOS (listening quality,
# 1..4.5). It is an estimate for trends and alarms, not a PESQ/POLQA measurement.
#
#   R   = R0 - Is - Id - Ie_eff + A        with R0 - Is = 93.2 (G.107 defaults), A = 0
#   Id  = 0.024 d + 0.11 (d - 177.3) H(d - 177.3)       (Cole & Rosenbluth 2001 fit of G.107's Id)
#         d = one-way mouth-to-ear delay in ms = network one way + jitter buffer + codec/packetization
#   Ie_eff = Ie + (95 - Ie) Ppl / (Ppl / BurstR + Bpl)  (G.107 7.2; Ppl in percent)
#         G.711: Ie = 0; Bpl = 25.1 with packet loss concealment, 4.3 without (G.113 Appendix I)
#   MOS = 1 + 0.035 R + 7e-6 R (R - 60) (100 - R)       for 0 < R < 100 (G.107 Annex B)
from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Codec", "Quality", "delay_impairment", "estimate", "loss_impairment", "mos_from_r"]

R_DEFAULT = 93.2


class Codec(enum.Enum):
    """Equipment impairment Ie, loss robustness Bpl with and without PLC, and algorithmic delay in
    ms (frame + look-ahead; G.711 has none, packetization is added separately)."""

    G711 = ("g711", 0.0, 25.1, 4.3, 0.0)

    def __init__(self, label: str, ie: float, bpl_plc: float, bpl_no_plc: float, delay_ms: float):
        self.label = label
        self.ie = ie
        self.bpl_plc = bpl_plc
        self.bpl_no_plc = bpl_no_plc
        self.delay_ms = delay_ms


@dataclass(frozen=True, slots=True)
class Quality:
    r: float
    mos: float
    delay_ms: float  # the mouth-to-ear delay d the estimate used


def delay_impairment(d_ms: float) -> float:
    d = max(0.0, d_ms)
    return 0.024 * d + (0.11 * (d - 177.3) if d > 177.3 else 0.0)


def loss_impairment(
    codec: Codec, loss_percent: float, *, plc: bool = True, burst_ratio: float = 1.0
) -> float:
    ppl = min(max(loss_percent, 0.0), 100.0)
    bpl = codec.bpl_plc if plc else codec.bpl_no_plc
    burst = max(burst_ratio, 1.0)
    if ppl == 0.0:
        return codec.ie
    return codec.ie + (95.0 - codec.ie) * ppl / (ppl / burst + bpl)


def mos_from_r(r: float) -> float:
    if r <= 0:
        return 1.0
    if r >= 100:
        return 4.5
    mos = 1.0 + 0.035 * r + 7e-6 * r * (r - 60.0) * (100.0 - r)
    # The cubic dips just under 1 for R below about 6.5; clamp so the mapping never goes down.
    return max(1.0, mos)


def estimate(
    *,
    one_way_delay_ms: float,
    jitter_ms: float,
    loss_percent: float,
    codec: Codec = Codec.G711,
    ptime_ms: float = 20.0,
    jitter_buffer_ms: float | None = None,
    plc: bool = True,
    burst_ratio: float = 1.0,
) -> Quality:
    """Estimate R and MOS for one direction of a call.

    one_way_delay_ms: network delay (RTT/2 from RTCP). jitter_ms: RFC 3550 interarrival jitter.
    The jitter buffer's delay is `jitter_buffer_ms` when the platform runs one, else the usual
    allowance of twice the jitter. Packetization adds one ptime.
    """
    buffer_ms = jitter_buffer_ms if jitter_buffer_ms is not None else 2.0 * max(jitter_ms, 0.0)
    d = max(one_way_delay_ms, 0.0) + buffer_ms + ptime_ms + codec.delay_ms
    r = (
        R_DEFAULT
        - delay_impairment(d)
        - loss_impairment(codec, loss_percent, plc=plc, burst_ratio=burst_ratio)
    )
    r = min(max(r, 0.0), 100.0)
    return Quality(r=round(r, 2), mos=round(mos_from_r(r), 2), delay_ms=d)

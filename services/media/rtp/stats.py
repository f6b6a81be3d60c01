# Per-source RTP statistics, sans-IO (the caller passes `now`, a monotonic time in seconds):
# receiver side per RFC 3550 appendix A.1 (sequence validation and wrap), A.3 (expected, lost,
# fraction lost) and A.8 (interarrival jitter); sender side counters for SR and round-trip time.
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from services.media.rtp.packet import ts_diff
from services.media.rtp.rtcp import (
    ReportBlock,
    SenderReport,
    dlsr_from_seconds,
    ntp_middle,
    ntp_timestamp,
)

__all__ = [
    "MAX_DROPOUT",
    "MAX_MISORDER",
    "MIN_SEQUENTIAL",
    "ReceiverStats",
    "SenderStats",
    "StreamSummary",
]

RTP_SEQ_MOD = 1 << 16
MAX_DROPOUT = 3000  # a forward jump beyond this is suspicious (RFC 3550 A.1)
MAX_MISORDER = 100  # a backward jump beyond this too
MIN_SEQUENTIAL = 2  # packets in sequence before a new source is believed


@dataclass(frozen=True, slots=True)
class StreamSummary:
    """What a call-quality event needs from one direction of a stream."""

    received: int
    expected: int
    lost: int
    loss_fraction: float  # cumulative, 0..1; duplicates never make it negative here
    jitter_ms: float


class ReceiverStats:
    """Reception statistics for one SSRC, exactly as RFC 3550 A.1/A.3/A.8 compute them.

    `min_sequential=1` accepts a source on its first packet: right when the SDP already told us who
    sends (a SIP leg); the default 2 is the RFC's probation against stray packets.
    """

    def __init__(self, clock_rate: int, *, min_sequential: int = MIN_SEQUENTIAL) -> None:
        if clock_rate <= 0:
            raise ValueError(f"clock rate {clock_rate} must be positive")
        if min_sequential < 1:
            raise ValueError("min_sequential must be at least 1")
        self.clock_rate = clock_rate
        self._min_sequential = min_sequential
        self._started = False
        self.probation = min_sequential
        self.max_seq = 0
        self.cycles = 0
        self.base_seq = 0
        self.bad_seq = RTP_SEQ_MOD + 1
        self.received = 0
        self._expected_prior = 0
        self._received_prior = 0
        self._jitter = 0.0  # in timestamp units (the RFC keeps it scaled by 16 in integers)
        self._last_arrival: float | None = None
        self._last_timestamp = 0
        self._last_sr_middle = 0
        self._last_sr_at: float | None = None

    def _init_seq(self, seq: int) -> None:
        self.base_seq = seq
        self.max_seq = seq
        self.bad_seq = RTP_SEQ_MOD + 1
        self.cycles = 0
        self.received = 0
        self._received_prior = 0
        self._expected_prior = 0
        self._last_arrival = None

    def _update_seq(self, seq: int) -> bool:
        if not self._started:
            self._started = True
            self._init_seq(seq)
            self.max_seq = (seq - 1) % RTP_SEQ_MOD
            self.probation = self._min_sequential
        udelta = (seq - self.max_seq) % RTP_SEQ_MOD
        if self.probation:
            if seq == (self.max_seq + 1) % RTP_SEQ_MOD:
                self.probation -= 1
                self.max_seq = seq
                if self.probation == 0:
                    self._init_seq(seq)
                    self.received += 1
                    return True
            else:
                self.probation = self._min_sequential - 1
                self.max_seq = seq
            return False
        if udelta < MAX_DROPOUT:
            if seq < self.max_seq:
                self.cycles += RTP_SEQ_MOD
            self.max_seq = seq
        elif udelta <= RTP_SEQ_MOD - MAX_MISORDER:
            if seq == self.bad_seq:
                # Two packets in sequence after a big jump: the sender restarted; follow it.
                self._init_seq(seq)
            else:
                self.bad_seq = (seq + 1) % RTP_SEQ_MOD
                return False
        # else: a duplicate or a reordered packet, counted but not moving max_seq
        self.received += 1
        return True

    def on_packet(self, seq: int, timestamp: int, now: float, *, timing: bool = True) -> bool:
        """Account one received packet; False if A.1 does not count it (probation, wild jump).

        Pass timing=False for packets whose timestamp is not their sampling instant (RFC 4733
        events keep the event's start timestamp for the whole event) so they do not fake jitter.
        """
        if not self._update_seq(seq):
            return False
        if timing:
            if self._last_arrival is not None:
                # D(i-1, i) of A.8 in timestamp units, computed from differences so that the
                # 32-bit timestamp wrap and a large `now` never lose precision.
                arrival_delta = (now - self._last_arrival) * self.clock_rate
                d = arrival_delta - ts_diff(timestamp, self._last_timestamp)
                self._jitter += (abs(d) - self._jitter) / 16.0
            self._last_arrival = now
            self._last_timestamp = timestamp
        return True

    @property
    def extended_max(self) -> int:
        return self.cycles + self.max_seq

    @property
    def expected(self) -> int:
        if not self._started or self.probation:
            return 0
        return self.extended_max - self.base_seq + 1

    @property
    def lost(self) -> int:
        """Cumulative packets lost (A.3); negative when duplicates outnumber losses."""
        return self.expected - self.received

    @property
    def jitter(self) -> float:
        """Interarrival jitter in timestamp units."""
        return self._jitter

    @property
    def jitter_seconds(self) -> float:
        return self._jitter / self.clock_rate

    def on_sender_report(self, ntp: int, now: float) -> None:
        """Remember the last SR from this source, for the LSR/DLSR fields of our next report."""
        self._last_sr_middle = ntp_middle(ntp)
        self._last_sr_at = now

    def report_block(self, ssrc: int, now: float) -> ReportBlock:
        """The reception report for this source; starts a new interval for `fraction_lost`."""
        expected = self.expected
        expected_interval = expected - self._expected_prior
        self._expected_prior = expected
        received_interval = self.received - self._received_prior
        self._received_prior = self.received
        lost_interval = expected_interval - received_interval
        if expected_interval == 0 or lost_interval <= 0:
            fraction = 0
        else:
            fraction = min(255, (lost_interval << 8) // expected_interval)
        dlsr = 0
        if self._last_sr_at is not None:
            dlsr = dlsr_from_seconds(now - self._last_sr_at)
        return ReportBlock(
            ssrc=ssrc,
            fraction_lost=fraction,
            cumulative_lost=max(-0x800000, min(0x7FFFFF, self.lost)),
            highest_seq=self.extended_max & 0xFFFFFFFF if expected else 0,
            jitter=min(0xFFFFFFFF, int(self._jitter)),
            lsr=self._last_sr_middle,
            dlsr=dlsr,
        )

    def summary(self) -> StreamSummary:
        expected = self.expected
        lost = max(0, self.lost)
        return StreamSummary(
            received=self.received,
            expected=expected,
            lost=lost,
            loss_fraction=lost / expected if expected else 0.0,
            jitter_ms=1000.0 * self.jitter_seconds,
        )


class SenderStats:
    """What we sent on one SSRC: the SR sender info, and the round-trip time from the peer's report
    blocks, matched to our SRs by their LSR so that only our monotonic clock is involved."""

    _REMEMBERED_SRS = 16

    def __init__(self, clock_rate: int) -> None:
        if clock_rate <= 0:
            raise ValueError(f"clock rate {clock_rate} must be positive")
        self.clock_rate = clock_rate
        self.packet_count = 0
        self.octet_count = 0
        self._last_timestamp: int | None = None
        self._last_sent_at = 0.0
        self._sent_srs: OrderedDict[int, float] = OrderedDict()
        self.rtt: float | None = None

    def on_sent(self, timestamp: int, payload_size: int, now: float) -> None:
        self.packet_count = (self.packet_count + 1) & 0xFFFFFFFF
        self.octet_count = (self.octet_count + payload_size) & 0xFFFFFFFF
        self._last_timestamp = timestamp
        self._last_sent_at = now

    @property
    def has_sent(self) -> bool:
        return self._last_timestamp is not None

    def sender_report(
        self, ssrc: int, now: float, wallclock: float, reports: tuple[ReportBlock, ...] = ()
    ) -> SenderReport:
        """An SR for `now`; `wallclock` is the Unix time at the same instant (for the NTP field).
        The RTP timestamp is extrapolated from the last packet sent, as RFC 3550 6.4.1 asks."""
        rtp_ts = 0
        if self._last_timestamp is not None:
            elapsed = round((now - self._last_sent_at) * self.clock_rate)
            rtp_ts = (self._last_timestamp + elapsed) & 0xFFFFFFFF
        ntp = ntp_timestamp(wallclock)
        self._sent_srs[ntp_middle(ntp)] = now
        while len(self._sent_srs) > self._REMEMBERED_SRS:
            self._sent_srs.popitem(last=False)
        return SenderReport(ssrc, ntp, rtp_ts, self.packet_count, self.octet_count, reports)

    def on_report_block(self, block: ReportBlock, now: float) -> float | None:
        """Round-trip time in seconds from a peer's report about our stream (A - LSR - DLSR)."""
        sent_at = self._sent_srs.get(block.lsr) if block.lsr else None
        if sent_at is None:
            return None
        rtt = now - sent_at - block.dlsr / 65536.0
        if rtt < 0:
            return None
        self.rtt = rtt
        return rtt

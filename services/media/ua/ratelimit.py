"""Per-source rate limiting for the SIP edge, sans-IO (time passed in).

Each source address has a token bucket: a request spends a token; without one it is answered 503. A
source that keeps sending while out of tokens is ignored for `ban_seconds` after `ban_after` rejections:
SIP scanners get silence, not answers. Rejections are forgiven only once the source has been quiet long
enough for its bucket to refill, not by the requests the refill lets through: a scanner at twice the rate
is half allowed, and it must still end up banned. Other sources are unaffected.

The SIP front applies it before dispatch (per source over all workers), and a worker applies it again in
single-process mode; the settings are SB_SIP_RATE, SB_SIP_BURST, SB_SIP_BAN_AFTER, SB_SIP_BAN_SECONDS
(services/kernel/config.py, docs/security.md).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Verdict(enum.Enum):
    ALLOW = "allow"
    REJECT = "reject"  # answer 503
    IGNORE = "ignore"  # drop silently


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float
    strikes: int = 0
    banned_until: float = 0.0


class SourceLimiter:
    def __init__(
        self,
        *,
        rate: float = 50.0,
        burst: float = 100.0,
        ban_after: int = 50,
        ban_seconds: float = 60.0,
        max_sources: int = 100_000,
    ) -> None:
        if rate <= 0 or burst < 1 or ban_after < 1 or ban_seconds < 0:
            raise ValueError("rate > 0, burst >= 1, ban_after >= 1 and ban_seconds >= 0 are required")
        self.rate = rate
        self.burst = burst
        self.ban_after = ban_after
        self.ban_seconds = ban_seconds
        self.max_sources = max_sources
        self._buckets: dict[str, _Bucket] = {}

    def check(self, source: str, now: float) -> Verdict:
        bucket = self._buckets.get(source)
        if bucket is None:
            if len(self._buckets) >= self.max_sources:
                self._evict(now)
            bucket = self._buckets[source] = _Bucket(self.burst, now)
        if now < bucket.banned_until:
            return Verdict.IGNORE
        refilled = bucket.tokens + (now - bucket.updated) * self.rate
        if refilled >= self.burst:
            bucket.strikes = 0  # quiet for long enough to refill: its past is forgiven
        bucket.tokens = min(self.burst, refilled)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return Verdict.ALLOW
        bucket.strikes += 1
        if bucket.strikes >= self.ban_after:
            bucket.banned_until = now + self.ban_seconds
            bucket.strikes = 0
            return Verdict.IGNORE
        return Verdict.REJECT

    def banned(self, source: str, now: float) -> bool:
        bucket = self._buckets.get(source)
        return bucket is not None and now < bucket.banned_until

    def _evict(self, now: float) -> None:
        # Full buckets that are not banned carry no state worth keeping.
        idle = [
            s
            for s, b in self._buckets.items()
            if b.banned_until <= now and b.tokens + (now - b.updated) * self.rate >= self.burst
        ]
        for source in idle or list(self._buckets)[: len(self._buckets) // 2]:
            del self._buckets[source]

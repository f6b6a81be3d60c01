"""Per-source rate limiting for the SIP edge, sans-IO (time passed in).

Each source address has a token bucket: a request spends a token; without one it is answered 503. A
source that keeps sending while out of tokens (`ban_after` more rejections than allowed requests) is ignored for
`ban_seconds`: SIP scanners get silence, not answers. Other sources are unaffected.
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
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            # Strikes decay by one per allowed request: a source sending far above its rate keeps
            # accumulating them even though the refill lets a request through now and then.
            bucket.strikes = max(0, bucket.strikes - 1)
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

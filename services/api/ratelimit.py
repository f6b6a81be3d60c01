"""Sliding-window rate limits (sans-IO: the caller passes `now`), one window per client address or key.

Limits are per process: with several API replicas, a client gets at most `limit` per replica per window.
"""

from __future__ import annotations

from collections import deque

__all__ = ["SlidingWindow"]


class SlidingWindow:
    def __init__(self, limit: int, window_s: float = 60.0, max_keys: int = 100_000) -> None:
        self.limit = limit
        self.window_s = window_s
        self.max_keys = max_keys
        self._hits: dict[str, deque[float]] = {}

    def allow(self, key: str, now: float, limit: int | None = None) -> tuple[bool, float]:
        """Count a hit for `key` if allowed (`limit`: this key's own, else the window's); returns (allowed,
        seconds until the next hit would be allowed)."""
        limit = self.limit if limit is None else limit
        hits = self._hits.get(key)
        if hits is None:
            if len(self._hits) >= self.max_keys:
                self._prune(now)
            hits = self._hits[key] = deque()
        horizon = now - self.window_s
        while hits and hits[0] <= horizon:
            hits.popleft()
        if len(hits) >= limit:
            return False, max(hits[-limit] - horizon, 0.0)
        hits.append(now)
        return True, 0.0

    def _prune(self, now: float) -> None:
        horizon = now - self.window_s
        stale = [k for k, hits in self._hits.items() if not hits or hits[-1] <= horizon]
        for k in stale:
            del self._hits[k]
        if len(self._hits) >= self.max_keys:
            # Everyone is active: drop the oldest half rather than grow without bound.
            for k in sorted(self._hits, key=lambda k: self._hits[k][-1])[: self.max_keys // 2]:
                del self._hits[k]

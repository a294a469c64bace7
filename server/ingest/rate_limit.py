"""Token buckets on the ingest routes: one per client IP (on by default at a generous rate: a
public page's tracker, whose key, if any, is public too) and one per write key (off by default).
A request takes a token from each that applies; with none left it gets 429 and `Retry-After`, the
time until the next token (the tracker and the peers' SDKs wait that long, then retry).

Requests from this machine (loopback addresses) are not limited: they are a local proxy that did
not name its client (add it to FORWARDED_ALLOW_IPS) or a benchmark, not a browser.

At most MAX_BUCKETS buckets are kept: past it, the buckets that have refilled (idle clients) are
dropped, then, if that freed too few, every bucket (a flood from very many addresses resets
them rather than growing memory). Measured by `python -m loadgen.bench_rate_limit`.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Hashable
from functools import lru_cache

from server.config import Settings
from server.http.errors import ApiError

MAX_BUCKETS = 100_000


class RateLimited(ApiError):
    status = 429
    code = "rate_limited"

    def __init__(self, message: str, retry_after_seconds: int):
        super().__init__(message, headers={"Retry-After": str(retry_after_seconds)})


@lru_cache(maxsize=4096)
def is_loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False


class TokenBuckets:
    """`rate` tokens a second per bucket, at most `burst` held (a new bucket starts full)."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self._buckets: dict[Hashable, tuple[float, float]] = {}  # key -> (tokens, at)

    def take(self, key: Hashable, now: float) -> float:
        """0 when a token was taken; else the seconds until the next one."""
        tokens, at = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens >= 1.0:
            if len(self._buckets) >= MAX_BUCKETS and key not in self._buckets:
                self._prune(now)
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate

    def _prune(self, now: float) -> None:
        full = [key for key, (tokens, at) in self._buckets.items() if tokens + (now - at) * self.rate >= self.burst]
        for key in full:
            del self._buckets[key]
        if len(self._buckets) >= MAX_BUCKETS // 2:
            self._buckets.clear()

    def __len__(self) -> int:
        return len(self._buckets)


class RateLimiter:
    """RATE_LIMIT_IP_* per client address, RATE_LIMIT_KEY_* per write key (a rate of 0 turns that
    kind off)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimiter:
        return cls(settings.rate_limit_ip_per_second, settings.rate_limit_ip_burst, settings.rate_limit_key_per_second,
                   settings.rate_limit_key_burst)

    def __init__(self, ip_rate: float, ip_burst: float, key_rate: float, key_burst: float) -> None:
        self.by_ip = TokenBuckets(ip_rate, ip_burst or ip_rate) if ip_rate > 0 else None
        self.by_key = TokenBuckets(key_rate, key_burst or key_rate) if key_rate > 0 else None

    def admit(self, ip: str, key: Hashable | None) -> None:
        """Raises RateLimited when a bucket of the request is empty. `key`: what names the write
        key (its apps), or None without one."""
        if self.by_ip is not None and ip and not is_loopback(ip):
            self._take(self.by_ip, ip, "this address")
        if key is not None and self.by_key is not None:
            self._take(self.by_key, key, "this write key")

    @staticmethod
    def _take(buckets: TokenBuckets, key: Hashable, whose: str) -> None:
        wait = buckets.take(key, time.monotonic())
        if wait:
            seconds = max(1, math.ceil(wait))
            raise RateLimited(f"too many requests from {whose}: retry after {seconds} s", seconds)

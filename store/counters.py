"""Counters kept in Redis that the workers add to and the gateway's /metrics reads: defined below both, so that
neither imports the other for them."""
from __future__ import annotations

import redis

UPSTREAM_ERRORS = "metrics:upstream-errors"  # hash: upstream name -> failed upstream attempts


def add_upstream_errors(client: redis.Redis, upstream: str, count: int) -> None:
    client.hincrby(UPSTREAM_ERRORS, upstream, count)


def upstream_errors(client: redis.Redis) -> dict[str, float]:
    """Failed upstream attempts per upstream name, as counted by every worker since Redis started."""
    counts = client.hgetall(UPSTREAM_ERRORS)
    return {(name.decode() if isinstance(name, bytes) else name): float(count) for name, count in counts.items()}

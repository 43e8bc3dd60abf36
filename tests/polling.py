"""Waiting in tests for something another process does: poll, never sleep a fixed time."""
from __future__ import annotations

import time


def wait_for(predicate, timeout: float, interval: float = 0.1, what: str = "condition"):
    """The first truthy value of predicate(), polled every `interval` seconds; AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")

"""Typed errors of the sync workers: transient ones make RQ retry the job, the others are reported."""
from __future__ import annotations


class SyncError(Exception):
    """Base class of every sync failure."""


class ConfigError(SyncError):
    """SYNC_UPSTREAMS / SYNC_UPSTREAM_URL or an auth setting cannot be used."""


class UnknownUpstream(SyncError):
    """A request named an upstream that is not configured."""


class UpstreamUnavailable(SyncError):
    """Transient: the upstream did not answer usefully after every attempt (connection, 408, 429, 5xx)."""


class UpstreamRejected(SyncError):
    """Permanent: the upstream answered 4xx; `status` and the OperationOutcome diagnostics are kept."""

    def __init__(self, message: str, status: int, outcome: dict | None = None):
        super().__init__(message)
        self.status, self.outcome = status, outcome


class AuthFailed(SyncError):
    """The upstream refused our credentials even after a token refresh."""


class LockBusy(SyncError):
    """Transient: another job held a patient's lock for longer than we wait."""

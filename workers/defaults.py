"""Worker defaults: documented constants, each overridable by the environment variable of the same name."""
from __future__ import annotations

import os
from collections.abc import Mapping

SYNC_QUEUE = "sync"                 # the one RQ queue every sync job goes to
SYNC_BATCH_SIZE = 100               # resources per upstream transaction and `_count` per search page
SYNC_PULL_OVERLAP_SECONDS = 2.0     # a pull asks for `_lastUpdated=gt(watermark - overlap)` to survive clock skew
SYNC_CONNECT_TIMEOUT = 5.0          # seconds to open a connection to an upstream
SYNC_READ_TIMEOUT = 60.0            # seconds to wait for an upstream answer (a 1000-entry transaction takes ~0.5 s)
SYNC_HTTP_ATTEMPTS = 4              # attempts of one HTTP call on connection errors, 408, 429 and 5xx
SYNC_BACKOFF_SECONDS = 0.5          # first backoff; doubled per attempt, with jitter
SYNC_BACKOFF_CAP_SECONDS = 10.0     # longest backoff between two attempts
SYNC_RETRY_AFTER_CAP_SECONDS = 30.0  # longest Retry-After we honour; longer answers wait this long
SYNC_JOB_RETRIES = "5,15,60"        # RQ retry intervals in seconds (one retry per value) for transient failures
SYNC_JOB_TIMEOUT = 1800             # seconds one sync job may run
SYNC_LEASE_SECONDS = 10             # a running job's lease and its patient locks expire this long after a crash
SYNC_LOCK_WAIT_SECONDS = 60         # how long a job waits for another job's patient lock before it retries later
SYNC_SWEEP_SECONDS = 5              # how often a worker looks for abandoned jobs


def setting(name: str, environ: Mapping[str, str] | None = None):
    """The value of constant `name`, overridden by the environment (cast to the constant's type)."""
    default = globals()[name]
    raw = (os.environ if environ is None else environ).get(name)
    if raw in (None, ""):
        return default
    return type(default)(raw)


def retry_intervals(environ: Mapping[str, str] | None = None) -> list[int]:
    return [int(float(v)) for v in str(setting("SYNC_JOB_RETRIES", environ)).split(",") if v.strip()]

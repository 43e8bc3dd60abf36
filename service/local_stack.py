"""The companions of `python -m service` on embedded defaults: a local FHIR server as the sync upstream when
none is configured, and one worker process for the queues. Production runs these separately (docker-compose)."""
from __future__ import annotations

import atexit
import logging
import os
import subprocess
import sys
from pathlib import Path

from localfhir import server as local_fhir

log = logging.getLogger("gateway.local")
REPO = Path(__file__).resolve().parent.parent


def start_local_upstream() -> str | None:
    """Start sekmet-fhir (installed into its own venv on first use) unless an upstream is configured."""
    if os.environ.get("SYNC_UPSTREAMS") or os.environ.get("SYNC_UPSTREAM_URL"):
        return None
    log.info("no sync upstream configured: starting a local FHIR server (first run installs it, ~20 s)")
    handle = local_fhir.start()
    atexit.register(local_fhir.stop, handle)
    os.environ["SYNC_UPSTREAM_URL"] = handle.base_url
    return handle.base_url


def start_worker(redis_url: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "workers", "--url", redis_url], cwd=REPO, env=dict(os.environ))
    atexit.register(proc.terminate)
    return proc

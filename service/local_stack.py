"""The companions of `python -m service` on embedded defaults: a local FHIR server as the sync upstream when
none is configured, and one worker process for the queues. Production runs these separately (docker-compose)."""
from __future__ import annotations

import atexit
import importlib.util
import logging
import os
import subprocess
import sys
from pathlib import Path

log = logging.getLogger("gateway.local")
REPO = Path(__file__).resolve().parent.parent


def _fhir_server_module():
    spec = importlib.util.spec_from_file_location("fhir_server", REPO / "scripts" / "fhir_server.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["fhir_server"] = module
    spec.loader.exec_module(module)
    return module


def start_local_upstream() -> str | None:
    """Start sekmet-fhir (installed into its own venv on first use) unless an upstream is configured."""
    if os.environ.get("SYNC_UPSTREAMS") or os.environ.get("SYNC_UPSTREAM_URL"):
        return None
    if not (REPO / "scripts" / "fhir_server.py").exists():
        return None
    module = _fhir_server_module()
    log.info("no sync upstream configured: starting a local FHIR server (first run installs it, ~20 s)")
    handle = module.start()
    atexit.register(module.stop, handle)
    os.environ["SYNC_UPSTREAM_URL"] = handle.base_url
    return handle.base_url


def start_worker(redis_url: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "workers", "--url", redis_url], cwd=REPO, env=dict(os.environ))
    atexit.register(proc.terminate)
    return proc

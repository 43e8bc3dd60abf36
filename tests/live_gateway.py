"""A real gateway process for tests: `python -m service` on a free port, gateway only, on the test Redis."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Iterator

import requests

from gateway_setup import api_keys_config
from net import free_port

REPO = Path(__file__).resolve().parent.parent


def wait_healthy(base: str, timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.ConnectionError):
            if requests.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"the gateway at {base} did not become healthy")


@contextlib.contextmanager
def live_gateway(redis_url: str, output: IO | int = subprocess.DEVNULL, database_url: str | None = None,
                 **env: str) -> Iterator[str]:
    """Yields the base URL; the test API key works; extra env overrides (e.g. SYNC_UPSTREAM_URL). Without a
    database_url it uses the run's shared SQLite file (GATEWAY_DATA_DIR, set by conftest)."""
    port = free_port()
    if database_url:
        env["GATEWAY_DATABASE_URL"] = database_url
    full_env = {**os.environ, "REDIS_URL": redis_url, "GATEWAY_PORT": str(port), "GATEWAY_API_KEYS": api_keys_config(),
                "GATEWAY_EMBEDDED_STACK": "0", "GATEWAY_RATE_LIMIT": "100000/minute", "PYTHONUNBUFFERED": "1", **env}
    proc = subprocess.Popen([sys.executable, "-m", "service"], cwd=REPO, env=full_env, stdout=output, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=20)

"""The Redis connection on embedded defaults.

Order: REDIS_URL if set; a Redis answering on localhost:6379; a private redis-server started for this
process if the binary exists; last, an in-process fakeredis (jobs then run inline), announced by one log line.
"""
from __future__ import annotations

import atexit
import logging
import shutil
import socket
import subprocess
import tempfile
import time

import redis

log = logging.getLogger("gateway.redis")
LOCAL_URL = "redis://localhost:6379/0"


def _answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5).ping())
    except (redis.RedisError, OSError):
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_private_redis() -> str | None:
    """Start redis-server on a free loopback port with AOF in a temp dir; stopped when this process exits."""
    binary = shutil.which("redis-server")
    if not binary:
        return None
    port, data_dir = _free_port(), tempfile.mkdtemp(prefix="gateway-redis-")
    proc = subprocess.Popen([binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", data_dir,
                             "--appendonly", "yes", "--save", ""], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    atexit.register(proc.terminate)
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(50):
        if _answers(url):
            return url
        time.sleep(0.1)
    proc.terminate()
    return None


def connect(url: str | None) -> tuple[redis.Redis, str, str | None]:
    """(client, mode, url) where mode is 'configured', 'local', 'private' or 'in-process' (url None)."""
    if url:
        return redis.Redis.from_url(url), "configured", url
    if _answers(LOCAL_URL):
        return redis.Redis.from_url(LOCAL_URL), "local", LOCAL_URL
    private = start_private_redis()
    if private:
        log.info("no Redis on localhost:6379; started a private redis-server at %s", private)
        return redis.Redis.from_url(private), "private", private
    import fakeredis

    log.warning("no Redis available: running in in-process mode (fakeredis, jobs run inline; nothing survives a restart)")
    return fakeredis.FakeRedis(), "in-process", None

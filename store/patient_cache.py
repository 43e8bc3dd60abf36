"""Cached patient views ($everything pages, treatment-line summaries) in Redis, keyed by the compartment version.

The version lives in the database (patient_state) and moves in every write's transaction, so a view cached
under version n is unreachable once a later write commits: no stale read after an acknowledged write. The
cached read takes it from a lease-bounded Redis mirror when the mirror allows (store/version_mirror.py), else
from the database. Keys
are hash-tagged by patient (`cache:{pid}:...`) so that Redis Cluster keeps a patient's views on one slot.
Redis is a cache only: when it is down or full, views are built and served uncached.
"""
from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Callable

import redis

from store.version_mirror import Read, VersionMirror

TTL_SECONDS = 3600
MAX_VARIANTS_PER_PATIENT = 16  # distinct cached views of one patient at one version (query variants)
log = logging.getLogger("store.cache")


def variant_key(*parts: str) -> str:
    return hashlib.sha1("\x1f".join(parts).encode()).hexdigest()[:16]


def etag(pid: str, version: int, variant: str) -> str:
    return f'W/"{pid}.{version}.{variant}"'


def key(pid: str, version: int, variant: str) -> str:
    return f"cache:{{{pid}}}:{version}:{variant}"


def _variants_key(pid: str, version: int) -> str:
    return f"cache:{{{pid}}}:{version}:variants"


def get(client: redis.Redis | None, pid: str, version: int, variant: str) -> bytes | None:
    if client is None:
        return None
    try:
        body = client.get(key(pid, version, variant))
    except redis.RedisError:
        return None
    return body.encode() if isinstance(body, str) else body  # str only from a client made with decode_responses


def get_after(client: redis.Redis | None, pid: str, version: int, variant: str,
              before: Callable[[redis.client.Pipeline], int]) -> tuple[bytes | None, list | None]:
    """The cached bytes in the same round trip as the commands before(pipe) queues ahead of the GET (it returns
    how many): (bytes or None, the results of those commands, or None when Redis failed)."""
    if client is None:
        return None, None
    try:
        pipe = client.pipeline(transaction=False)
        count = before(pipe)
        pipe.get(key(pid, version, variant))
        results = pipe.execute()
    except redis.RedisError:
        return None, None
    return results[count], results[:count]


class _Batch:
    """The few commands of a cached read's lookup (INCR, EXPIRE, EVALSHA, GET: what the callers queue), sent in one
    round trip by the connection's own packing and parsing, like a non-transactional pipeline with
    raise_on_error=False (an error reply is returned in its place), but without the Pipeline object's per-use
    set-up, bookkeeping and observability hooks, and on a connection of this thread's own instead of one checked out
    of the pool (whose checkout probes the socket, three system calls): together they cost the cached read about as
    much as its own commands (bench/gateway.py, benchmark 2). Replies come as the connection parses them (no
    response callbacks: EXPIRE answers 1, not True). A connection that fails mid-flight is closed, so no reply is
    ever left for the next batch; one the server dropped is reopened and the batch sent once more, as the client's
    default retry would; any other failure raises redis.RedisError, as a pipeline does."""

    def __init__(self, pool: redis.ConnectionPool) -> None:
        self.pool = pool
        self.commands: list[tuple] = []

    def incr(self, name: str) -> None:
        self.commands.append(("INCR", name))

    def expire(self, name: str, seconds: int) -> None:
        self.commands.append(("EXPIRE", name, seconds))

    def evalsha(self, sha: str, numkeys: int, *keys_and_args) -> None:
        self.commands.append(("EVALSHA", sha, numkeys, *keys_and_args))

    def get(self, name: str) -> None:
        self.commands.append(("GET", name))

    def execute(self, raise_on_error: bool = False) -> list:
        assert not raise_on_error, "a batch returns error replies in place"
        connections = _thread_connections.__dict__.setdefault("by_pool", {})
        conn = connections.get(self.pool)
        if conn is None:
            conn = connections[self.pool] = self.pool.connection_class(**self.pool.connection_kwargs)
        try:
            return self._round_trip(conn)
        except redis.ConnectionError:
            return self._round_trip(conn)  # closed by _round_trip: it connects afresh (a restarted or idle-dropping server)

    def _round_trip(self, conn) -> list:
        try:
            conn.send_packed_command(conn.pack_commands(self.commands))
            results: list = []
            for _ in self.commands:
                try:
                    results.append(conn.read_response())
                except redis.ResponseError as exc:
                    results.append(exc)
        except BaseException:
            conn.disconnect()  # replies may be left on the socket: the next use connects afresh
            raise
        return results


_thread_connections = threading.local()  # per thread: {pool: its Redis connection for _Batch}


def _forget_thread_connections() -> None:
    """A forked child must not share its parent's sockets (the forking thread's would survive the fork)."""
    global _thread_connections
    _thread_connections = threading.local()


os.register_at_fork(after_in_child=_forget_thread_connections)


def _batch(client: redis.Redis):
    """A _Batch on a plain client, else (a fake or a cluster client, a client-side cache) a pipeline."""
    pool = client.connection_pool
    if type(client) is redis.Redis and type(pool) is redis.ConnectionPool and getattr(pool, "cache", None) is None:
        return _Batch(pool)
    return client.pipeline(transaction=False)


def lookup(client: redis.Redis | None, mirror: VersionMirror | None, pid: str, guess: int | None, variant: str,
           before: Callable[[redis.client.Pipeline], int]) -> tuple[Read | None, bytes | None, list | None]:
    """A cached read's one round trip: the commands before(pipe) queues (it returns how many), the version
    mirror's read (store/version_mirror.py) and the cached bytes under the version guessed (None: no GET).
    (the mirror's answer or None, the bytes under the guess or None, the results of before's commands or None
    when Redis failed them)."""
    if client is None:
        return None, None, None
    try:
        pipe = _batch(client)
        count = before(pipe)
        if mirror is not None:
            mirror.queue_read(pipe, pid)
        if guess is not None:
            pipe.get(key(pid, guess, variant))
        results = pipe.execute(raise_on_error=False)
    except redis.RedisError:
        return None, None, None
    counted = results[:count]
    rest = results[count:]
    read = mirror.read_result(rest.pop(0)) if mirror is not None else None
    body = rest[0] if rest and isinstance(rest[0], bytes | str) else None
    return (read, body.encode() if isinstance(body, str) else body,
            None if any(isinstance(r, Exception) for r in counted) else counted)


def fill_and_get(client: redis.Redis | None, mirror: VersionMirror | None, read: Read | None, pid: str, version: int,
                 variant: str | None) -> bytes | None:
    """After a SQL read of a live patient's version: offer it to the mirror (when read says a fill may be
    taken) and, when variant is given, GET the cached bytes under it, in one round trip."""
    fill = mirror is not None and read is not None and read.fillable
    if client is None or (not fill and variant is None):
        return None
    try:
        pipe = client.pipeline(transaction=False)
        if fill:
            assert mirror is not None and read is not None
            mirror.queue_fill(pipe, pid, version, read)
        if variant is not None:
            pipe.get(key(pid, version, variant))
        results = pipe.execute(raise_on_error=False)
    except redis.RedisError:
        return None
    body = results[-1] if variant is not None else None
    if not isinstance(body, bytes | str):
        return None
    return body.encode() if isinstance(body, str) else body


def put(client: redis.Redis | None, pid: str, version: int, variant: str, body: bytes) -> bool:
    """Cache body unless the patient already has MAX_VARIANTS_PER_PATIENT views at this version."""
    if client is None:
        return False
    try:
        pipe = client.pipeline()
        pipe.sadd(_variants_key(pid, version), variant)
        pipe.scard(_variants_key(pid, version))
        pipe.expire(_variants_key(pid, version), TTL_SECONDS)
        _, size, _ = pipe.execute()
        if size > MAX_VARIANTS_PER_PATIENT:
            client.srem(_variants_key(pid, version), variant)
            return False
        client.set(key(pid, version, variant), body, ex=TTL_SECONDS)
        return True
    except redis.RedisError as exc:
        log.warning("cache write skipped", extra={"error": type(exc).__name__})
        return False


def cached_view(client: redis.Redis | None, pid: str, version: int, variant: str, build: Callable[[], bytes],
                current_version: Callable[[], int]) -> tuple[bytes, str, bool]:
    """(bytes, etag, hit): stored bytes as they are on a hit; built on a miss, and cached only if no write moved
    the version while it was being built (current_version() reads it again from the database)."""
    stored = get(client, pid, version, variant)
    if stored is not None:
        return stored, etag(pid, version, variant), True
    return build_and_put(client, pid, version, variant, build, current_version), etag(pid, version, variant), False


def build_and_put(client: redis.Redis | None, pid: str, version: int, variant: str, build: Callable[[], bytes],
                  current_version: Callable[[], int]) -> bytes:
    """A miss: the view built, and cached only if no write moved the version while it was being built."""
    body = build()
    if current_version() == version:
        put(client, pid, version, variant, body)
    return body

"""A lease-bounded Redis mirror of patient_state.version, so that a cached read needs no SQL statement.

The version of record stays in the database (patient_state, bumped in every write's transaction). A reader
may take the mirrored value instead of reading the row only under the rule below, which keeps the guarantee
the SQL read gave: **no read serves a view older than a write already acknowledged to any client, in any
process**, with Redis up, flushed, down, or unreachable for one process only.

One Redis hash per patient, `pv:{<pid>}` (hash-tagged like the cache keys: one Redis Cluster slot), so that it
is lost (flush, eviction, expiry) as a whole, never half of it. Its fields, times in ms of Redis's own clock:

    v, e     the mirrored version, and when it stops being usable (at most L after a time taken before the SQL
             read that produced it: a fill "expires within L of a read that preceded any later commit")
    w, wu    writers between their pre-commit mark and their end, and until when those marks count (a writer
             killed between mark and commit stops counting after MARK_SECONDS)
    f        a fence: no fill is accepted, and no mirrored value served, before f

Reader: one script in the cached read's pipeline returns v when v is unexpired and no fence or marked writer
stands (else SQL), with Redis's time T of that moment. After a SQL read it offers (version, T) to the fill
script, accepted only if no fence or marked writer stands, the key existed, and T + L is still ahead; v then
expires at T + L. A fill that finds the key absent (flushed, evicted, expired) stores only a fence f = now + L
(the hold): whatever fence was lost, every later fill comes from a read that began after the loss.

Writer (store.writes via mark_writers, store.db.write via the after-write hook), per transaction: before
commit, one pipelined round trip marks every touched patient (w + 1, v deleted); after the transaction ends,
one round trip ends the marks and, if it committed (or may have), sets the fence f = max(f, now + L). Only
when that end could not reach Redis does the writer sleep L + MARGIN_SECONDS after the commit before
returning (so before any acknowledgement): every value filled from a read older than its commit has expired.

Why it holds, for a write W committed at c and acknowledged at k, and a reader R served v at u > k:
  - W's end reached Redis at d (c < d < k): f >= d + L ever since, or the key was lost after d and every
    script that recreates it starts with a fence >= now + L. Either way u >= d + L when v is served, and v's
    expiry T + L > u gives T > d > c: v came from a SQL read that began after W committed.
  - W's end failed: W slept until c + L + margin before k; v unexpired at u > k gives T + L > c + L, so T > c.
A writer killed between mark and commit committed nothing; its mark only keeps readers on SQL for up to
MARK_SECONDS. Every process that writes patient data must call attach() (the gateway and the workers do):
a writer without the mirror sets no fence and does not wait. All processes must use the same L
(GATEWAY_VERSION_MIRROR_SECONDS). A Redis that loses writes it acknowledged (AOF everysec crash, failover to
an async replica) may bring back a fill without its fence: stale for at most L (docs/store.md).
"""
from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis
from sqlalchemy import Connection, Engine

from store import db

log = logging.getLogger("store.version_mirror")

DEFAULT_LEASE_SECONDS = 1.0
MARGIN_SECONDS = 0.1        # the writer's sleep beyond L: clock rate differences, Redis's 1 ms expiry resolution
MARK_SECONDS = 120          # a writer's mark outlives any write transaction; a killed writer's mark stops counting
                            # (GATEWAY_VERSION_MIRROR_MARK_SECONDS overrides it, for tests)
KEEP_SECONDS = 3600         # the hash's own TTL: losing it only costs a hold of L on the next read

_NOW = "local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) "
_BUSY = ("local function busy(h, now) return (tonumber(h[3] or '0') > 0 and now < tonumber(h[4] or '0')) "
         "or now < tonumber(h[5] or '0') end ")

# KEYS[1] = pv:{pid}. {1, now, v}: serve v. {2, now}: fill may be tried. {0, now}: a writer or fence stands.
READ = "-- version-mirror:read\n" + _NOW + _BUSY + """
local h = redis.call('HMGET', KEYS[1], 'v', 'e', 'w', 'wu', 'f')
if busy(h, now) then return {0, now} end
if h[1] and now < tonumber(h[2]) then return {1, now, h[1]} end
return {2, now}
"""

# ARGV: version, T (Redis ms before the SQL read began), lease ms, keep ms. 1 when stored.
FILL = "-- version-mirror:fill\n" + _NOW + _BUSY + """
local lease = tonumber(ARGV[3])
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'f', now + lease)
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  return 0
end
local h = redis.call('HMGET', KEYS[1], 'v', 'e', 'w', 'wu', 'f')
if busy(h, now) then return 0 end
local expires = tonumber(ARGV[2]) + lease
if now >= expires then return 0 end
if h[1] and now < tonumber(h[2]) then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'e', expires)
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"""

# ARGV: mark ms, lease ms, keep ms. A key recreated here starts with a fence, as in FILL.
MARK = "-- version-mirror:mark\n" + _NOW + """
local fence = tonumber(redis.call('HGET', KEYS[1], 'f') or '0')
if redis.call('EXISTS', KEYS[1]) == 0 then fence = now + tonumber(ARGV[2]) end
local w = tonumber(redis.call('HGET', KEYS[1], 'w') or '0')
if now >= tonumber(redis.call('HGET', KEYS[1], 'wu') or '0') then w = 0 end
redis.call('HSET', KEYS[1], 'w', w + 1, 'wu', now + tonumber(ARGV[1]), 'f', fence)
redis.call('HDEL', KEYS[1], 'v', 'e')
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return w + 1
"""

# ARGV: this writer marked the key (1/0), fence (1/0: the transaction committed or may have), lease ms, keep ms.
END = "-- version-mirror:end\n" + _NOW + """
local w = tonumber(redis.call('HGET', KEYS[1], 'w') or '0')
if now >= tonumber(redis.call('HGET', KEYS[1], 'wu') or '0') then w = 0 end
if ARGV[1] == '1' and w > 0 then w = w - 1 end
local fence = tonumber(redis.call('HGET', KEYS[1], 'f') or '0')
if ARGV[2] == '1' or redis.call('EXISTS', KEYS[1]) == 0 then
  fence = math.max(fence, now + tonumber(ARGV[3]))
  redis.call('HDEL', KEYS[1], 'v', 'e')
end
redis.call('HSET', KEYS[1], 'w', w, 'f', fence)
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return w
"""


def key(pid: str) -> str:
    return f"pv:{{{pid}}}"


def lease_from_env(engine: Engine, environ: Mapping[str, str] | None = None) -> float:
    """GATEWAY_VERSION_MIRROR_SECONDS (L); 0 turns the mirror off. Unset: 1 s on PostgreSQL, where the SQL read
    is a round trip to another process (0.2-0.5 ms under load), and off on SQLite, where it is ~0.03 ms in
    process, about what the mirror's script adds to the Redis round trip, while each write would still pay the
    marks (bench/README.md, benchmark 2). Gateways and workers read the same variable: every process on one
    database must use the same L."""
    raw = (os.environ if environ is None else environ).get("GATEWAY_VERSION_MIRROR_SECONDS", "")
    if raw.strip():
        return float(raw)
    return DEFAULT_LEASE_SECONDS if engine.dialect.name == "postgresql" else 0.0


@dataclass(frozen=True)
class Read:
    """What the read script answered: the mirrored version (None: read SQL), and whether a fill may be tried
    with `at` (Redis ms, taken before the caller's SQL read)."""
    version: int | None
    at: int
    fillable: bool


class VersionMirror:
    def __init__(self, client: redis.Redis, lease_seconds: float) -> None:
        self.client = client
        self.lease_ms = int(lease_seconds * 1000)
        self.lease_seconds = lease_seconds
        self.mark_ms = int(float(os.environ.get("GATEWAY_VERSION_MIRROR_MARK_SECONDS") or MARK_SECONDS) * 1000)
        self._read_sha = hashlib.sha1(READ.encode()).hexdigest()
        self._lock = threading.Lock()
        self._reload()  # Redis down at start: the first reads fail their EVALSHA and load it once Redis is back

    # -- reader --------------------------------------------------------------------------------------------
    def queue_read(self, pipe: Any, pid: str) -> None:
        """One command in the caller's pipeline; parse its result with read_result."""
        pipe.evalsha(self._read_sha, 1, key(pid))

    def read_result(self, result: object) -> Read | None:
        """None when Redis failed the script (then nothing is filled either)."""
        if isinstance(result, redis.exceptions.NoScriptError):
            self._reload()  # Redis restarted or its scripts were flushed: the next read uses the script again
            return None
        if isinstance(result, Exception) or not isinstance(result, list) or len(result) < 2:
            return None
        status, at = int(result[0]), int(result[1])
        if status == 1:
            return Read(int(result[2]), at, False)
        return Read(None, at, status == 2)

    def queue_fill(self, pipe: Any, pid: str, version: int, read: Read) -> None:
        """Offer the version of a live patient, read from SQL after `read` was taken."""
        pipe.eval(FILL, 1, key(pid), version, read.at, self.lease_ms, KEEP_SECONDS * 1000)

    def _reload(self) -> None:
        with self._lock:
            try:
                self.client.script_load(READ)
            except redis.RedisError:
                pass

    # -- writer --------------------------------------------------------------------------------------------
    def mark(self, pids: list[str]) -> bool:
        """Pre-commit: one round trip marking every patient; False when Redis did not confirm all of them."""
        try:
            pipe = self.client.pipeline(transaction=False)
            for pid in pids:
                pipe.eval(MARK, 1, key(pid), self.mark_ms, self.lease_ms, KEEP_SECONDS * 1000)
            pipe.execute()
            return True
        except redis.RedisError as exc:
            log.warning("version mirror: writer marks not placed", extra={"error": type(exc).__name__})
            return False

    def end(self, pids: list[str], marked: bool, fence: bool) -> bool:
        """After the transaction: one round trip ending the marks (and setting the fences); False on failure."""
        try:
            pipe = self.client.pipeline(transaction=False)
            for pid in pids:
                pipe.eval(END, 1, key(pid), int(marked), int(fence), self.lease_ms, KEEP_SECONDS * 1000)
            pipe.execute()
            return True
        except redis.RedisError as exc:
            log.warning("version mirror: writer fences not set", extra={"error": type(exc).__name__})
            return False


_mirrors: dict[Engine, VersionMirror] = {}


def attach(engine: Engine, client: redis.Redis | None, lease_seconds: float) -> VersionMirror | None:
    """Make this process's reads and writes on engine use the mirror in client (None or L = 0: detach)."""
    if client is None or lease_seconds <= 0:
        _mirrors.pop(engine, None)
        return None
    mirror = VersionMirror(client, lease_seconds)
    _mirrors[engine] = mirror
    return mirror


def for_engine(engine: Engine) -> VersionMirror | None:
    return _mirrors.get(engine)


class _Marks:
    """One write transaction's touched patients; called by store.db.write once the transaction has ended."""

    def __init__(self, mirror: VersionMirror) -> None:
        self.mirror = mirror
        self.pids: list[str] = []
        self.marked: set[str] = set()

    def add(self, pids: list[str]) -> None:
        new = [p for p in pids if p not in self.pids]
        if not new:
            return
        self.pids += new
        if self.mirror.mark(new):
            self.marked |= set(new)

    def __call__(self, outcome: db.Outcome) -> None:
        fence = outcome != db.Outcome.ROLLED_BACK
        ended_at = time.monotonic()
        ok = True
        for marked in (True, False):
            group = [p for p in self.pids if (p in self.marked) == marked]
            if group and (marked or fence):
                ok = self.mirror.end(group, marked, fence) and ok
        if fence and not ok:
            # No fence reached Redis: wait until every value filled from a read older than the commit has
            # expired (fills expire within L of a Redis time taken before their SQL read), then return.
            time.sleep(max(0.0, ended_at + self.mirror.lease_seconds + MARGIN_SECONDS - time.monotonic()))


def mark_writers(conn: Connection, pids: set[str]) -> None:
    """In a write transaction, before it commits: the patients whose version it bumps (store.writes._bump)."""
    mirror = _mirrors.get(conn.engine)
    if mirror is None or not pids:
        return
    hooks = db.after_write_hooks(conn)
    if hooks is None:
        raise RuntimeError("patient versions are bumped only inside store.db.write (its end sets the mirror's fences)")
    marks = next((h for h in hooks if isinstance(h, _Marks) and h.mirror is mirror), None)
    if marks is None:
        marks = _Marks(mirror)
        hooks.append(marks)
    marks.add(sorted(pids))

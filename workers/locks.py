"""A running job's lease and its per-patient locks, both kept alive by one renewal thread.

Both expire SYNC_LEASE_SECONDS after the last renewal, so a worker killed with SIGKILL frees its patients
within that time and the sweep (workers/sweep.py) can tell its job was abandoned.
"""
from __future__ import annotations

import contextlib
import threading
import time
import uuid
from typing import Iterator

import redis

from workers import defaults, sync_keys
from workers.errors import LockBusy


class JobLease:
    """`with JobLease(client, job_id) as lease:` marks the job alive; `lease.patient(pid)` locks one patient."""

    def __init__(self, client: redis.Redis, job_id: str, seconds: int | None = None):
        self.client, self.job_id = client, job_id
        self.seconds = seconds or defaults.setting("SYNC_LEASE_SECONDS")
        self._locks: list[PatientLock] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew_forever, name=f"lease-{job_id}", daemon=True)
        self.lock_windows: list[tuple[str, float, float]] = []  # (patient, acquired, released): proof of no overlap

    def __enter__(self) -> "JobLease":
        self.client.set(sync_keys.lease(self.job_id), "1", ex=self.seconds)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=self.seconds)
        self.client.delete(sync_keys.lease(self.job_id))

    @contextlib.contextmanager
    def patient(self, pid: str) -> Iterator[None]:
        """Hold patient pid's lock while the block runs; LockBusy (transient) after SYNC_LOCK_WAIT_SECONDS."""
        lock = PatientLock(self.client, sync_keys.patient_lock(pid), self.seconds)
        if not lock.acquire(defaults.setting("SYNC_LOCK_WAIT_SECONDS")):
            raise LockBusy(f"patient lock held by another job for more than {defaults.setting('SYNC_LOCK_WAIT_SECONDS')}s")
        acquired = time.time()
        self._locks.append(lock)
        try:
            yield
        finally:
            self._locks.remove(lock)
            self.lock_windows.append((pid, acquired, time.time()))
            lock.release()

    def _renew_forever(self) -> None:
        # Renew at a third of the lifetime so that one missed beat does not let anything expire.
        while not self._stop.wait(self.seconds / 3):
            self.client.set(sync_keys.lease(self.job_id), "1", ex=self.seconds)
            for lock in list(self._locks):
                lock.renew()


class PatientLock:
    """SET NX with an expiry and a random token; renew and release only while the token is ours.
    WATCH/MULTI instead of Lua so that it also works on fakeredis (the gateway's in-process mode)."""

    def __init__(self, client: redis.Redis, key: str, seconds: int):
        self.client, self.key, self.seconds, self.token = client, key, seconds, uuid.uuid4().hex
        # The job's thread releases while the lease's renewal thread may be renewing: one at a time, or the
        # renewal's EXPIRE makes the release's WATCH fail.
        self._turn = threading.Lock()

    def acquire(self, wait_seconds: float) -> bool:
        deadline = time.monotonic() + wait_seconds
        while not self.client.set(self.key, self.token, nx=True, ex=self.seconds):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def renew(self) -> bool:
        return self._if_ours(lambda pipe: pipe.expire(self.key, self.seconds))

    def release(self) -> bool:
        return self._if_ours(lambda pipe: pipe.delete(self.key))

    def _if_ours(self, action, attempts: int = 5) -> bool:
        # Giving up on the first WatchError (an EXPIRE of our own renewal thread racing a release) left a released
        # lock held until it expired, and the next job for that patient waited it out; now this process's
        # threads take turns, and a change by anyone else is retried while the token is still ours.
        with self._turn:
            return self._if_ours_now(action, attempts)

    def _if_ours_now(self, action, attempts: int) -> bool:
        for _ in range(attempts):
            with self.client.pipeline() as pipe:
                try:
                    pipe.watch(self.key)
                    if pipe.get(self.key) != self.token.encode():
                        return False
                    pipe.multi()
                    action(pipe)
                    pipe.execute()
                    return True
                except redis.WatchError:
                    continue
        return False

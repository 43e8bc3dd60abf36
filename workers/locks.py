"""A running job's lease and its per-patient locks, both kept alive by one renewal thread.

Both expire SYNC_LEASE_SECONDS after the last renewal, so a worker killed with SIGKILL frees its patients
within that time and the sweep (workers/sweep.py) can tell its job was abandoned.
"""
from __future__ import annotations

import contextlib
import threading
import time
from typing import Iterator

import redis
from redis.exceptions import LockError

from workers import defaults, sync_keys
from workers.errors import LockBusy


class JobLease:
    """`with JobLease(client, job_id) as lease:` marks the job alive; `lease.patient(pid)` locks one patient."""

    def __init__(self, client: redis.Redis, job_id: str, seconds: int | None = None):
        self.client, self.job_id = client, job_id
        self.seconds = seconds or defaults.setting("SYNC_LEASE_SECONDS")
        self._locks: list[redis.lock.Lock] = []
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
        lock = self.client.lock(sync_keys.patient_lock(pid), timeout=self.seconds, thread_local=False,
                                blocking_timeout=defaults.setting("SYNC_LOCK_WAIT_SECONDS"), sleep=0.05)
        if not lock.acquire():
            raise LockBusy(f"patient lock held by another job for more than {defaults.setting('SYNC_LOCK_WAIT_SECONDS')}s")
        acquired = time.time()
        self._locks.append(lock)
        try:
            yield
        finally:
            self._locks.remove(lock)
            self.lock_windows.append((pid, acquired, time.time()))
            with contextlib.suppress(LockError):
                lock.release()

    def _renew_forever(self) -> None:
        # Renew at a third of the lifetime so that one missed beat does not let anything expire.
        while not self._stop.wait(self.seconds / 3):
            self.client.set(sync_keys.lease(self.job_id), "1", ex=self.seconds)
            for lock in list(self._locks):
                with contextlib.suppress(LockError):
                    lock.reacquire()

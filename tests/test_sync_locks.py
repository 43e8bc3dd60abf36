"""Per-patient locks against a real Redis: a release that races the renewal thread still frees the lock."""
from __future__ import annotations

import threading

from workers.locks import PatientLock


def test_release_racing_renewals_frees_the_lock_at_once(redis_client):
    for round_ in range(50):
        lock = PatientLock(redis_client, f"sync:lock:patient:race-{round_}", seconds=30)
        assert lock.acquire(1)
        stop = threading.Event()

        def renew_hard():
            while not stop.is_set():
                lock.renew()

        renewer = threading.Thread(target=renew_hard)
        renewer.start()
        try:
            assert lock.release(), f"round {round_}: release gave up while renewals ran"
        finally:
            stop.set()
            renewer.join()
        assert redis_client.get(lock.key) is None
        assert PatientLock(redis_client, lock.key, seconds=30).acquire(0), "the next job must get the lock at once"


def test_a_lock_is_never_released_by_a_job_that_does_not_hold_it(redis_client):
    mine = PatientLock(redis_client, "sync:lock:patient:p-1", seconds=30)
    theirs = PatientLock(redis_client, "sync:lock:patient:p-1", seconds=30)
    assert mine.acquire(1) and not theirs.acquire(0.1)
    assert not theirs.release() and not theirs.renew()
    assert redis_client.get(mine.key) == mine.token.encode()

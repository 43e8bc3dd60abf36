"""Every Redis key the sync workers use, in one place (see docs/sync.md): only coordination (locks, leases); their
error counter, which /metrics reads, is in store/counters.py. Id maps, baselines, watermarks and conflicts live in the store of record (workers/sync_state.py)."""
from __future__ import annotations


def patient_lock(pid: str) -> str:
    return f"sync:lock:patient:{pid}"  # token of the job writing this patient's resources (expires unless renewed)


def lease(job_id: str) -> str:
    return f"sync:lease:{job_id}"  # set while a job runs in a live worker; its absence marks an abandoned job

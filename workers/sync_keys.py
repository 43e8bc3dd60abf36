"""Every Redis key the sync workers use (all prefixed `sync:`), in one place (see docs/sync.md)."""
from __future__ import annotations

CONFLICTS = "sync:conflicts"  # hash: conflict id -> JSON record (both versions, differing paths)


def id_map(upstream: str) -> str:
    return f"sync:{upstream}:map"  # hash: "Type/localId" -> upstream id


def reverse_map(upstream: str) -> str:
    return f"sync:{upstream}:rmap"  # hash: "Type/upstreamId" -> local id


def state(upstream: str) -> str:
    return f"sync:{upstream}:state"  # hash: "Type/localId" -> JSON {uv: upstream versionId, lh: local content hash}


def pull_watermark(upstream: str, scope: str) -> str:
    return f"sync:{upstream}:pull-wm:{scope}"  # newest upstream lastUpdated seen by a pull of scope ('all' or a patient)


def push_watermark(upstream: str) -> str:
    return f"sync:{upstream}:push-wm"  # ms: local changes before this were pushed by an all-patients push


def patient_lock(pid: str) -> str:
    return f"sync:lock:patient:{pid}"  # token of the job writing this patient's resources (expires unless renewed)


def lease(job_id: str) -> str:
    return f"sync:lease:{job_id}"  # set while a job runs in a live worker; its absence marks an abandoned job


UPSTREAM_ERRORS = "metrics:upstream-errors"  # hash: upstream name -> failed upstream attempts (read by /metrics)

"""A sync job's result summary and its progress, kept in the RQ job's meta while it runs."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from rq import get_current_job


@dataclass
class Summary:
    created: int = 0          # resources created (upstream on push, locally on pull)
    updated: int = 0          # resources changed
    unchanged: int = 0        # resources already equal on both sides: nothing written
    upstream_wins: int = 0    # push found the upstream copy newer and ours untouched: pulled it instead
    duplicates: int = 0       # pulled again inside the overlap window at a version we already had
    conflicts: list[dict] = field(default_factory=list)  # {id, resource}: both sides changed; skipped
    errors: list[dict] = field(default_factory=list)     # {resource?, reason}: permanent failures; skipped
    patients: int = 0
    requests: int = 0         # HTTP calls made to the upstream

    def as_dict(self) -> dict:
        return asdict(self)

    def error(self, reason: str, resource: str | None = None) -> None:
        self.errors.append({"resource": resource, "reason": reason} if resource else {"reason": reason})


class Progress:
    """resources done / total in job.meta['progress']; a no-op outside a job (direct calls in tests)."""

    def __init__(self) -> None:
        self.job = get_current_job()
        self.done, self.total = 0, 0

    def set_total(self, total: int) -> None:
        self.total = total
        self._save()

    def advance(self, count: int) -> None:
        self.done += count
        self.total = max(self.total, self.done)
        self._save()

    def note(self, key: str, value: object) -> None:
        if self.job is not None:
            self.job.meta[key] = value
            self.job.save_meta()

    def _save(self) -> None:
        self.note("progress", {"done": self.done, "total": self.total})

"""The RQ job of `POST /$import`: fetch the manifest's NDJSON URLs into the job's folder, then run store.bulk.

The job's state (store.bulk's checkpoint) lives in the RQ job's meta, saved after every committed chunk. A worker
killed mid-import leaves its lease to expire; the sweep (workers/sweep.py) re-enqueues the job, which resumes from
the last checkpoint: chunks re-applied after it are PUTs of identical content, so nothing is stored twice.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import requests
from rq import get_current_job

from store import bulk
from store.db import DEFAULT_DATA_DIR
from workers.database import store
from workers.locks import JobLease

log = logging.getLogger("workers.bulk_import")
META_KEY = "bulk_import"
FETCH_TIMEOUT = (5, 300)


def data_dir() -> Path:
    """Where uploaded and fetched NDJSON and the results of bulk jobs are kept (GATEWAY_DATA_DIR/bulk)."""
    return Path(os.environ.get("GATEWAY_DATA_DIR") or DEFAULT_DATA_DIR).resolve() / "bulk"


def job_folder(kind: str, job_id: str) -> Path:
    return data_dir() / kind / job_id


def run_import(folder: str, request_info: dict) -> dict:
    """Import every NDJSON input of `folder`/input (uploads) and of request_info['urls'] (fetched first)."""
    job = get_current_job()
    assert job is not None, "runs as an RQ job"
    root = Path(folder)
    with JobLease(job.connection, job.id):
        state = (job.meta or {}).get(META_KEY)
        if not state:
            inputs = _uploads(root) + _fetch_all(root, request_info.get("urls", []))
            state = bulk.new_state(inputs, request_info.get("policy", "lenient"))
            _save(job, state)
        log.info("job %s: bulk import of %d input(s), pass %d", job.id, len(state["inputs"]), state["pass"])
        bulk.ImportRun(store(), root / "result", state, lambda s: _save(job, s)).run()
    for spool in (root / "result").glob("deferred.*.ndjson"):
        spool.unlink()
    return {"counts": state["counts"], "errors": state["errors"]}


def _save(job, state: dict) -> None:
    job.meta[META_KEY] = state
    job.save_meta()


def _uploads(root: Path) -> list[tuple[str, Path]]:
    folder = root / "input"
    names = json.loads((folder / "names.json").read_text()) if (folder / "names.json").exists() else {}
    return [(names.get(p.name, p.name), p) for p in sorted(folder.glob("*.ndjson"))]


def _fetch_all(root: Path, urls: list[dict]) -> list[tuple[str, Path]]:
    """Each manifest URL streamed to a file (memory stays flat whatever its size), in the manifest's order."""
    fetched = []
    target = root / "fetched"
    target.mkdir(parents=True, exist_ok=True)
    for i, item in enumerate(urls):
        path = target / f"{i:04d}.ndjson"
        # No credentials are sent (none are kept in the queue): the URLs must be readable as given.
        with requests.get(item["url"], headers={"Accept": "application/fhir+ndjson"}, stream=True,
                          timeout=FETCH_TIMEOUT) as answer:
            answer.raise_for_status()  # transient: RQ retries the job; nothing was imported yet
            with path.open("wb") as handle:
                for block in answer.iter_content(1 << 20):
                    handle.write(block)
        fetched.append((item["url"], path))
    return fetched

"""`python -m workers`: an RQ worker on the sync and summaries queues that also re-runs jobs abandoned by dead workers.

    python -m workers [--url REDIS_URL] [--burst] [--name NAME]
"""
from __future__ import annotations

import argparse
import logging
import os
import threading

import redis
from rq import Worker

from store import version_mirror
from workers import defaults, sweep
# Imported before the worker forks its work horses: otherwise every job re-imports the job modules (and
# fhir.resources behind them) in its fresh child, ~200 ms of CPU per job (measured in bench/sync.py).
from workers import jobs as _jobs, summaries as _summaries  # noqa: F401
from workers.database import store
from workers.queues import note_failed_attempt, queue, summaries_queue

log = logging.getLogger("workers")


def _sweep_forever(url: str, interval: float, stop: threading.Event) -> None:
    client = redis.Redis.from_url(url)  # its own connection: the worker's must not be shared across threads
    while not stop.wait(interval):
        try:
            sweep.requeue_abandoned(client)
        except redis.RedisError as exc:
            log.warning("abandoned-job sweep failed: %s", type(exc).__name__)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workers", description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("REDIS_URL") or "redis://localhost:6379/0")
    parser.add_argument("--burst", action="store_true", help="quit when the queue is empty")
    parser.add_argument("--name", help="worker name (default: RQ's)")
    args = parser.parse_args(argv)
    from workers import logs

    logs.configure()
    # Open and migrate the store of record once, here, before any work horse forks: otherwise each job would run
    # the migration check (about a second) before it takes its lease, and the sweep could count it abandoned.
    store()
    client = redis.Redis.from_url(args.url)
    # The jobs' writes mark and fence the patients' versions mirrored in Redis (store/version_mirror.py), as
    # the gateway's do: without it a gateway could serve a version older than a write acknowledged here.
    version_mirror.attach(store(), client, version_mirror.lease_from_env(store()))
    requeued = sweep.requeue_abandoned(client)
    if requeued:
        log.info("re-enqueued %d abandoned job(s) at start: %s", len(requeued), ", ".join(requeued))
    stop = threading.Event()
    threading.Thread(target=_sweep_forever, args=(args.url, defaults.setting("SYNC_SWEEP_SECONDS"), stop),
                     name="sweep", daemon=True).start()
    try:
        # log_job_description=False: a job description would print its arguments (patient references) to the log.
        Worker([queue(client), summaries_queue(client)], connection=client, name=args.name, log_job_description=False,
               exception_handlers=[note_failed_attempt]).work(burst=args.burst, with_scheduler=True)
    finally:
        stop.set()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmarks 3, 4 and 6: push and pull sync against the real local FHIR server (sekmet-fhir), and worker scale-out.

3  push: the real push job (`workers.jobs.push`, all patients, in-process RQ SimpleWorker) for SYNC_BATCH_SIZE
   1, 10, 50, 100, 250, against the baseline of one request per resource: each resource PUT on its own, by
   conditional update on its identifier (`PUT Type?identifier=…`, Provenance `PUT Type/id`), through the same
   FhirClient (keep-alive session), with the same upstream bodies (`push.to_upstream`). Target: batched (the
   default 100) >= 5 x the baseline. Every measurement starts from an empty server (reset_db) and no sync state.
4  pull: the same patients loaded straight into the server (one transaction per patient), then the real pull job
   (`workers.jobs.pull`, all patients), following `next` pages; baseline: paging the same searches with the same
   FhirClient and doing nothing with the pages. Then an incremental pull with nothing changed (upstream requests;
   expected one per type, 7).
6  scale-out: one push job per patient on the sync queue, run by 1 and then 2 real `python -m workers --burst`
   processes; wall time from the first enqueue to the last job finished, with the CPU seconds of the workers
   (their work horses included) and of the sekmet process (/proc/<pid>/stat) over the same interval.
   Target: 2 workers >= 1.7 x 1 worker.

Patients come from bench/cohort.py (seeded) and are stored through the gateway's write path (case_to_bundle,
plan_bundle, apply_entries). Redis db 9 (flushed at start and end); one sekmet server, wiped between measurements.
Run: .venv/bin/python bench/sync.py [--patients 40] [--rounds 2] [--scale-rounds 3] [--db 9] [--only 3,4,6]
(about 3 minutes on 2 cores; needs Redis on 127.0.0.1:6379)
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
import redis  # noqa: E402
from cohort import cohort  # noqa: E402
from rq import SimpleWorker  # noqa: E402
from rq.job import Job  # noqa: E402

from localfhir.server import reset_db, start, stop  # noqa: E402
from mappings.case_bundle import case_to_bundle  # noqa: E402
from mappings.fhir_vocabulary import write_rank  # noqa: E402
from mappings.references import identifier_token  # noqa: E402
from store import reads  # noqa: E402
from store.bundle_plan import plan_bundle  # noqa: E402
from store.writes import apply_entries  # noqa: E402
from workers import jobs, push as push_module  # noqa: E402
from workers.fhir_client import FhirClient  # noqa: E402
from workers.pull import PULL_TYPES  # noqa: E402
from workers.queues import enqueue, queue  # noqa: E402
from workers.upstreams import resolve  # noqa: E402
from workers.database import store  # noqa: E402
from sqlalchemy import delete  # noqa: E402
from store.schema import metadata, sync_baselines, sync_conflicts, sync_ids, sync_watermarks  # noqa: E402

BATCH_SIZES = (1, 10, 50, 100, 250)
DEFAULT_BATCH = 100
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- setup


def store_patients(client: redis.Redis, cases: list[dict]) -> list[str]:
    """Write each case through the gateway's write path; the local Patient ids."""
    pids = []
    for case in cases:
        _, planned = plan_bundle(case_to_bundle(case), 10_000)
        assert not [i for p in planned for i in p.issues]
        outcomes = apply_entries(store(), planned)
        pids.append(next(o.location for o in outcomes if o.location.startswith("Patient/")).split("/")[1])
    return pids


SYNC_TABLES = (sync_ids, sync_baselines, sync_watermarks, sync_conflicts)


def clear_sync_state(client: redis.Redis) -> None:
    """Forget everything sync knows (id map, baselines, watermarks in the store of record; locks and RQ's keys in
    Redis); keep the clinical store."""
    with store().begin() as conn:
        for table in SYNC_TABLES:
            conn.execute(delete(table))
    for pattern in ("sync:*", "rq:*", "metrics:*"):
        for key in client.scan_iter(pattern, count=1000):
            client.delete(key)


def empty_everything(client: redis.Redis) -> None:
    """An empty store of record (every table) and an empty Redis database: nothing the gateway knew is left."""
    with store().begin() as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(delete(table))
    client.flushdb()


def fresh_upstream(handle) -> None:
    reset_db(handle.db_path)


def upstream_total(fhir: FhirClient, types=(*PULL_TYPES, "Provenance")) -> int:
    return sum(int(fhir.get(t, {"_summary": "count"}).get("total") or 0) for t in types)


def run_in_process(client: redis.Redis, func, *args) -> tuple[float, dict]:
    """Enqueue one job and run it with an in-process burst worker; (seconds, job result)."""
    job = enqueue(client, func, *args)
    start_t = time.perf_counter()
    SimpleWorker([queue(client)], connection=client).work(burst=True, logging_level="WARNING")
    seconds = time.perf_counter() - start_t
    job = Job.fetch(job.id, connection=client)
    assert job.get_status() == "finished", (job.get_status(), job.exc_info and job.exc_info[-800:])
    return seconds, job.return_value()


# --------------------------------------------------------------------------- 3. push


def push_job(client, handle, batch: int) -> dict:
    fresh_upstream(handle)
    clear_sync_state(client)
    os.environ["SYNC_BATCH_SIZE"] = str(batch)
    srv0, own0 = cpu_seconds(handle.pid), time.process_time()
    seconds, result = run_in_process(client, jobs.push, "default")
    assert not result["errors"] and not result["conflicts"], result
    return {"seconds": seconds, "resources": result["created"], "requests": result["requests"],
            "server_cpu": cpu_seconds(handle.pid) - srv0, "own_cpu": time.process_time() - own0}


def push_baseline(client, handle, pids: list[str]) -> dict:
    """One request per resource: PUT by identifier (or by id), same bodies, same FhirClient, no batching."""
    fresh_upstream(handle)
    clear_sync_state(client)
    fhir = FhirClient(resolve("default"))
    srv0, own0 = cpu_seconds(handle.pid), time.process_time()
    start_t = time.perf_counter()
    count = 0
    for pid in pids:
        resources = sorted(reads.compartment(store(), pid),
                           key=lambda r: (write_rank(r["resourceType"]), r["id"]))
        targets = {f"{r['resourceType']}/{r['id']}": r["id"] for r in resources}  # empty server: upstream id = ours
        for r in resources:
            outgoing = push_module.to_upstream(r, r["id"], targets)
            rtype = r["resourceType"]
            path = (f"{rtype}?identifier={quote(identifier_token(outgoing['identifier'][0]), safe='')}"
                    if outgoing.get("identifier") else f"{rtype}/{outgoing['id']}")
            fhir.send("PUT", fhir.url(path), body=outgoing)
            count += 1
    return {"seconds": time.perf_counter() - start_t, "resources": count, "requests": fhir.requests_made,
            "server_cpu": cpu_seconds(handle.pid) - srv0, "own_cpu": time.process_time() - own0}


def bench_push(client, handle, pids: list[str], rounds: int) -> dict:
    print("\n3. push sync (resources/s; best of rounds; each from an empty server)", flush=True)
    runs: dict[str, list[dict]] = {}
    for _ in range(rounds):  # alternate baseline and batched so noise hits both
        runs.setdefault("baseline", []).append(push_baseline(client, handle, pids))
        runs.setdefault(DEFAULT_BATCH, []).append(push_job(client, handle, DEFAULT_BATCH))
    for batch in BATCH_SIZES:
        if batch != DEFAULT_BATCH:
            runs.setdefault(batch, []).append(push_job(client, handle, batch))
    best = {k: max(v, key=lambda r: r["resources"] / r["seconds"]) for k, v in runs.items()}
    base = best["baseline"]["resources"] / best["baseline"]["seconds"]
    rows = [("baseline: 1 PUT/resource", best["baseline"])] + [(f"push job, SYNC_BATCH_SIZE={b}", best[b]) for b in BATCH_SIZES]
    for name, r in rows:
        rate = r["resources"] / r["seconds"]
        print(f"  {name:30s} {r['resources']:5d} resources {r['seconds']:6.2f} s {rate:7.0f} resources/s "
              f"{r['requests']:5d} requests  x{rate / base:5.2f} baseline; CPU ms/resource: sekmet "
              f"{r['server_cpu'] / r['resources'] * 1000:.2f}, bench process {r['own_cpu'] / r['resources'] * 1000:.2f}", flush=True)
    ratio = best[DEFAULT_BATCH]["resources"] / best[DEFAULT_BATCH]["seconds"] / base
    print(f"  batched ({DEFAULT_BATCH}) / baseline: {ratio:.2f} (target >= 5: {'met' if ratio >= 5 else 'missed'})", flush=True)
    b = best[DEFAULT_BATCH]
    print(f"  ceiling with sekmet's own CPU per resource in a transaction ({b['server_cpu'] / b['resources'] * 1000:.2f} ms): "
          f"{best['baseline']['seconds'] / b['server_cpu']:.2f} x the baseline, even if the push cost nothing on our side", flush=True)
    return best


# --------------------------------------------------------------------------- 4. pull


def load_upstream_directly(handle, cases: list[dict]) -> int:
    """One transaction per patient, straight into the server (not through the gateway)."""
    fhir = FhirClient(resolve("default"))
    total = 0
    for case in cases:
        bundle = case_to_bundle(case)
        answer = fhir.transaction(bundle)
        total += len(answer.get("entry", []))
    return total


def raw_paging() -> dict:
    """Baseline: the pull's searches and `next` pages, nothing done with them."""
    fhir = FhirClient(resolve("default"))
    start_t = time.perf_counter()
    count = 0
    for rtype in PULL_TYPES:
        for page in fhir.pages(rtype, {"_count": str(DEFAULT_BATCH), "_sort": "_lastUpdated"}):
            count += sum(1 for e in page.get("entry", []) if e.get("search", {}).get("mode", "match") == "match")
    return {"seconds": time.perf_counter() - start_t, "resources": count, "requests": fhir.requests_made}


def bench_pull(client, handle, cases: list[dict], rounds: int) -> None:
    print("\n4. pull sync (all patients, paged search, pages of SYNC_BATCH_SIZE=100)", flush=True)
    os.environ["SYNC_BATCH_SIZE"] = str(DEFAULT_BATCH)
    # This measures paged search (its baseline is the same GETs by hand); sekmet also offers $export, which an
    # all-patients pull would otherwise take (workers/bulk_pull.py).
    os.environ["SYNC_UPSTREAM_EXPORT"] = "off"
    fresh_upstream(handle)
    empty_everything(client)
    t0 = time.perf_counter()
    loaded = load_upstream_directly(handle, cases)
    print(f"  loaded {loaded} resources straight into sekmet in {time.perf_counter() - t0:.1f} s "
          f"({upstream_total(FhirClient(resolve('default')), PULL_TYPES)} of the pulled types)", flush=True)
    pulls, raws = [], []
    for _ in range(rounds):
        raws.append(raw_paging())
        empty_everything(client)  # the store starts empty: every pulled resource is new to the gateway
        seconds, result = run_in_process(client, jobs.pull, "default")
        assert not result["errors"], result["errors"][:3]
        pulls.append({"seconds": seconds, "resources": result["created"] + result["updated"] + result["duplicates"],
                      "requests": result["requests"], "created": result["created"]})
    p = max(pulls, key=lambda r: r["resources"] / r["seconds"])
    r = max(raws, key=lambda r: r["resources"] / r["seconds"])
    pr, rr = p["resources"] / p["seconds"], r["resources"] / r["seconds"]
    print(f"  pull job (into an empty store)  {p['resources']:5d} resources {p['seconds']:6.2f} s {pr:7.0f} resources/s "
          f"{p['requests']:4d} requests ({p['created']} created locally)")
    print(f"  baseline: paging only           {r['resources']:5d} resources {r['seconds']:6.2f} s {rr:7.0f} resources/s "
          f"{r['requests']:4d} requests")
    print(f"  pull job / paging only: {pr / rr:.2f}", flush=True)
    incremental = []
    for _ in range(3):
        seconds, result = run_in_process(client, jobs.pull, "default")
        incremental.append((seconds, result))
    _incremental_line("right after the bulk load", incremental)
    # The overlap re-reads whatever changed in the SYNC_PULL_OVERLAP_SECONDS before the newest change: right after
    # a bulk load that is most of it. Steady state: one small change (one more patient) after a pause, pulled once.
    time.sleep(2.5)
    load_upstream_directly(handle, [next(cohort(1, seed=99))])
    run_in_process(client, jobs.pull, "default")
    _incremental_line("after one later patient", [run_in_process(client, jobs.pull, "default") for _ in range(3)])


def _incremental_line(when: str, runs: list[tuple[float, dict]]) -> None:
    seconds = sorted(s for s, _ in runs)[len(runs) // 2]  # median of the runs
    result = runs[-1][1]
    changed = sum(r["created"] + r["updated"] for _, r in runs)
    print(f"  incremental pull, nothing changed ({when}): {result['requests']} upstream requests "
          f"({len(PULL_TYPES)} types), median {seconds * 1000:.0f} ms of {len(runs)}, {changed} changed, "
          f"{result['duplicates']} re-fetched inside the overlap", flush=True)


# --------------------------------------------------------------------------- 6. scale-out


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def redis_cpu(client) -> float:
    info = client.info("cpu")
    return info["used_cpu_user"] + info["used_cpu_sys"]


def worker_env(url: str) -> dict:
    return {**os.environ, "SYNC_UPSTREAM_URL": url, "SYNC_BATCH_SIZE": str(DEFAULT_BATCH), "PYTHONUNBUFFERED": "1"}


def run_workers(client, handle, pids: list[str], n: int, redis_url: str) -> dict:
    fresh_upstream(handle)
    clear_sync_state(client)
    env = worker_env(handle.base_url)
    cpu0, srv0, red0 = children_cpu(), cpu_seconds(handle.pid), redis_cpu(client)
    t0 = time.perf_counter()
    ids = [enqueue(client, jobs.push, "default", f"Patient/{pid}").id for pid in pids]
    procs = [subprocess.Popen([sys.executable, "-m", "workers", "--url", redis_url, "--burst", "--name", f"bench-{n}-{i}"],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for i in range(n)]
    for proc in procs:
        proc.wait(300)
    wall = time.perf_counter() - t0
    cpu, srv, red = children_cpu() - cpu0, cpu_seconds(handle.pid) - srv0, redis_cpu(client) - red0
    statuses = [Job.fetch(i, connection=client).get_status() for i in ids]
    assert all(s == "finished" for s in statuses), statuses
    created = sum(Job.fetch(i, connection=client).return_value()["created"] for i in ids)
    return {"wall": wall, "resources": created, "workers_cpu": cpu, "server_cpu": srv, "redis_cpu": red}


def idle_worker_seconds(redis_url: str, url: str) -> float:
    """Start-to-exit of a burst worker on an empty queue: the start-up every measured run pays once."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "workers", "--url", redis_url, "--burst"], cwd=ROOT, env=worker_env(url),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, timeout=120)
    return time.perf_counter() - t0


def bench_scale(client, handle, cases: list[dict], redis_url: str, rounds: int) -> None:
    print(f"\n6. scale-out: one push job per patient ({len(cases)} jobs), real `python -m workers --burst` processes",
          flush=True)
    empty_everything(client)
    pids = store_patients(client, cases)
    idle = idle_worker_seconds(redis_url, handle.base_url)
    runs: dict[int, list[dict]] = {}
    for _ in range(rounds):  # alternate 1 and 2 workers so noise hits both
        for n in (1, 2):
            runs.setdefault(n, []).append(run_workers(client, handle, pids, n, redis_url))
    best = {n: min(v, key=lambda r: r["wall"]) for n, v in runs.items()}
    for n, r in best.items():
        print(f"  {n} worker(s): {r['wall']:6.2f} s wall, {r['resources'] / r['wall']:5.0f} resources/s, "
              f"{len(pids) / r['wall']:5.2f} jobs/s; CPU s: workers {r['workers_cpu']:.1f}, sekmet {r['server_cpu']:.1f} "
              f"({r['server_cpu'] / r['wall'] * 50:.0f}% of 2 cores), redis {r['redis_cpu']:.1f}; "
              f"all runs {', '.join('%.2f' % x['wall'] for x in runs[n])} s", flush=True)
    one, two = best[1], best[2]
    speedup = one["wall"] / two["wall"]
    print(f"  2 workers / 1 worker: {speedup:.2f} x (target >= 1.7: {'met' if speedup >= 1.7 else 'missed'})")
    cpu_total = one["workers_cpu"] + one["server_cpu"] + one["redis_cpu"]
    print(f"  worker start-up (idle burst worker, start to exit): {idle:.2f} s, paid once per run")
    print(f"  1-worker run: {cpu_total:.1f} CPU s in {one['wall']:.1f} s wall; sekmet alone {one['server_cpu']:.1f} CPU s "
          f"({one['server_cpu'] / cpu_total * 100:.0f}% of the CPU used). On 2 cores the 2-worker run cannot beat "
          f"{cpu_total / 2:.1f} s, i.e. at most {one['wall'] / max(cpu_total / 2, one['server_cpu']):.2f} x "
          f"(sekmet is one process: it alone needs {one['server_cpu']:.1f} s)")
    w1 = one["wall"] - idle
    w2 = two["wall"] - idle
    print(f"  excluding worker start-up: {w1:.2f} s vs {w2:.2f} s = {w1 / w2:.2f} x", flush=True)


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--scale-rounds", type=int, default=3, help="rounds of benchmark 6 (1 then 2 workers)")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--db", type=int, default=9, help="Redis database: flushed at start and end")
    parser.add_argument("--only", default="3,4,6", help="which benchmarks, e.g. 3,6")
    args = parser.parse_args()
    if not os.environ.get("GATEWAY_DATABASE_URL"):
        # Its own SQLite file, which the benchmark empties between runs: never the operator's .gateway-data.
        os.environ["GATEWAY_DATA_DIR"] = tempfile.mkdtemp(prefix="bench-sync-")
    only = set(args.only.split(","))
    redis_url = f"redis://127.0.0.1:6379/{args.db}"
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    cases = list(cohort(args.patients, seed=args.seed))
    handle = None
    started = time.perf_counter()
    try:
        handle = start()
        for key in [k for k in os.environ if k.startswith("SYNC_")]:
            del os.environ[key]
        os.environ["SYNC_UPSTREAM_URL"] = handle.base_url
        pids = store_patients(client, cases)
        print(f"{len(cases)} patients (cohort seed {args.seed}), "
              f"{sum(len(reads.compartment(store(), p)) for p in pids)} resources in the gateway store; "
              f"sekmet-fhir at {handle.base_url} (pid {handle.pid}); {os.cpu_count()} CPUs", flush=True)
        if "3" in only:
            bench_push(client, handle, pids, args.rounds)
        if "4" in only:
            bench_pull(client, handle, cases, args.rounds)
        if "6" in only:
            bench_scale(client, handle, cases, redis_url, args.scale_rounds)
        print(f"\ntotal {time.perf_counter() - started:.0f} s")
    finally:
        if handle is not None:
            stop(handle)
        client.flushdb()


if __name__ == "__main__":
    main()

"""Benchmark 2 (+7): a cached patient bundle read through the gateway under gunicorn, keep-alive clients (wrk).

Same run, same patient, same bytes, same gunicorn settings:
  baseline  bench/baseline_app.py, one Redis GET in a bare Flask route (target: gateway >= 0.7 x);
  upstream  the local FHIR server (sekmet-fhir) answering Patient/{id}/$everything (target: gateway >= 10 x).
The gateway's store of record is a fresh SQLite file (--engine sqlite, the default) or a fresh database on the
PostgreSQL of TEST_POSTGRES_URL (--engine postgresql), dropped at the end; Redis holds only the cache.
Also p50/p99 latency, and the peak RSS of the gateway's gunicorn processes (benchmark 7).
Run: .venv/bin/python bench/gateway.py [--seconds 10] [--rounds 2] [--db 11] [--engine sqlite|postgresql] [--no-upstream]
(needs Redis and `wrk`). --profile N: instead, N cached requests through the Flask test client in one thread,
unprofiled (ms/request) and under cProfile, with the time of each stage of the request pipeline per request.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
sys.path.append(str(ROOT / "tests"))  # net.free_port, databases
import redis
from cohort import cohort, resource_count
from net import free_port

from mappings.case_bundle import case_to_bundle
from service import create_app
from service.apikeys import create_key

BODY_KEY = "bench:body"
UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def bench_case(size: int = 48) -> dict:
    """The first generated case of about the cohort's median size."""
    return next(c for c in cohort(200, seed=1) if resource_count(c) >= size)


@contextlib.contextmanager
def store_of_record(engine: str):
    """A fresh, migrated database of the engine for this run: its URL; removed at the end."""
    from store import db

    if engine == "sqlite":
        with tempfile.TemporaryDirectory(prefix="bench-gateway-") as folder:
            url = f"sqlite:///{folder}/gateway.sqlite3"
            db.engine_for(url)
            yield url
        return
    sys.path.insert(0, str(ROOT / "tests"))
    from databases import create_postgres_database, drop_postgres_database

    url = create_postgres_database("bench")
    db.engine_for(url)
    try:
        yield url
    finally:
        db.engine_for(url).dispose()
        drop_postgres_database(url)


def load_patient(url: str, database_url: str, case: dict) -> tuple[str, str, bytes]:
    """(api key, patient id, $everything bytes) after writing the case through the gateway and warming its cache."""
    app = create_app({"REDIS_URL": url, "DATABASE_URL": database_url, "RATE_LIMIT": "100000000/minute"})
    key = create_key(app.extensions["store"], "bench", ["system/*.read", "system/*.write", "admin"])
    client = app.test_client()
    written = client.post("/Bundle", json=case_to_bundle(case), headers={"X-API-Key": key})
    assert written.status_code == 200, written.get_data(as_text=True)[:500]
    pid = written.get_json()["entry"][0]["response"]["location"].split("/")[1]
    for _ in range(2):
        body = client.get(f"/Patient/{pid}/$everything", headers={"X-API-Key": key})
    assert body.status_code == 200 and body.headers["X-Cache"] == "hit"
    app.extensions["redis"].set(BODY_KEY, body.data)
    return key, pid, body.data


def gunicorn(target: str, env: dict, workers: int, threads: int) -> tuple[subprocess.Popen, int]:
    port = free_port()
    cmd = [str(ROOT / ".venv/bin/gunicorn"), "-w", str(workers), "-k", "gthread", "--threads", str(threads),
           "--keep-alive", "30", "-b", f"127.0.0.1:{port}", "--pythonpath", f"{ROOT},{ROOT / 'bench'}", target]
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.1)
    proc.terminate()
    raise RuntimeError(f"{target} did not start")


def wrk(url: str, headers: dict, seconds: int, connections: int) -> dict:
    """Requests/s and latency percentiles from `wrk --latency` (2 client threads, keep-alive)."""
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    for name, value in headers.items():
        cmd += ["-H", f"{name}: {value}"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"errors from {url}:\n{out}")

    def latency(pct: str) -> float:
        value, unit = _found(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out).groups()
        return float(value) * UNITS[unit]

    return {"rps": float(_found(r"Requests/sec:\s+([\d.]+)", out).group(1)), "p50": latency("50"), "p99": latency("99")}


def _found(pattern: str, text: str) -> re.Match[str]:
    match = re.search(pattern, text, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"{pattern!r} not found in:\n{text}")
    return match


def peak_rss_mb(master: int) -> tuple[float, float]:
    """(sum of peak RSS of master and workers, largest worker peak) in MB, from /proc VmHWM."""
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    peaks = {}
    for pid in [str(master)] + children:
        status = Path(f"/proc/{pid}/status").read_text()
        peaks[pid] = int(_found(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024
    return sum(peaks.values()), max(v for k, v in peaks.items() if k != str(master))


def load_upstream(bundle: dict):
    """Start sekmet-fhir, post the same resources as a transaction; (handle, $everything URL)."""
    from localfhir.server import start

    handle = start()
    request = urllib.request.Request(handle.base_url, data=json.dumps(bundle).encode(), method="POST",
                                     headers={"Content-Type": "application/fhir+json", **handle.auth_headers()})
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.load(response)
    locations = [e["response"]["location"] for e in answer["entry"]]
    pid = next(m.group(1) for m in map(re.compile(r"(?:^|/)Patient/([^/]+)").search, locations) if m)
    url = f"{handle.base_url}/Patient/{pid}/$everything"
    with urllib.request.urlopen(urllib.request.Request(url, headers=handle.auth_headers()), timeout=60) as response:
        everything = json.load(response)
    print(f"upstream: sekmet-fhir $everything gives {len(everything.get('entry', []))} entries", flush=True)
    return handle, url


def warm(url: str, headers: dict, requests: int = 20) -> None:
    """A few requests first, so that every worker has booted and connected before wrk starts the clock."""
    for _ in range(requests):
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as response:
            response.read()


def measure(name: str, url: str, headers: dict, args, results: dict) -> None:
    warm(url, headers)
    figures = wrk(url, headers, args.seconds, args.connections)
    results.setdefault(name, []).append(figures)
    print(f"  {name:24s} {figures['rps']:8.0f} req/s  p50 {figures['p50']:6.2f} ms  p99 {figures['p99']:6.2f} ms", flush=True)


def whatif(env: dict, path: str, key: str, args, results: dict, procs: list) -> None:
    """The gateway with one more part of its pipeline removed each time, measured against the baseline again."""
    for changes in ("noversion", "noversion,nolimit", "noversion,nolimit,noaudit"):
        proc, port = gunicorn("whatif_app:app", {**env, "BENCH_WHATIF": changes}, args.workers, args.threads)
        procs.append(proc)
        measure(changes, f"http://127.0.0.1:{port}{path}", {"X-API-Key": key}, args, results)
        proc.terminate()
        proc.wait(10)


# (file, function) of each pipeline stage priced by --profile, in the order a request meets them.
STAGES = [("__init__.py", "admit", "hook: request id, clock, auth"), ("logs.py", "start", "request id, clock"),
          ("auth.py", "check_access", "auth (API key, scopes)"), ("rate_limit.py", "count_request", "rate limit hook (deferred)"),
          ("request_limits.py", "check", "URL / parameter bounds"), ("fhir_http.py", "check_format", "_format / Accept"),
          ("patients.py", "_everything_params", "parameters checked"), ("paging.py", "base_url", "base URL"),
          ("patient_cache.py", "variant_key", "variant key"), ("reads.py", "patient_exists", "SQL: exists + version"),
          ("patient_cache.py", "lookup", "Redis: rate count, version, bytes"), ("audit.py", "record", "audit event queued"),
          ("__init__.py", "answer", "hook: headers, metrics, log line"), ("metrics.py", "observe", "metrics"),
          ("logs.py", "finish", "log line"), ("headers.py", "secure", "security headers"),
          ("patients.py", "everything", "the whole $everything view"), ("app.py", "full_dispatch_request", "Flask: hooks + view"),
          ("app.py", "wsgi_app", "Flask: whole request")]


def profile(url: str, database_url: str, case: dict, requests: int) -> None:
    import cProfile
    import pstats

    key, pid, _ = load_patient(url, database_url, case)
    app = create_app({"REDIS_URL": url, "DATABASE_URL": database_url, "RATE_LIMIT": "100000000/minute"})
    client, headers, path = app.test_client(), {"X-API-Key": key}, f"/Patient/{pid}/$everything"
    for _ in range(200):
        client.get(path, headers=headers)
    started = time.perf_counter()
    for _ in range(requests):
        assert client.get(path, headers=headers).headers["X-Cache"] == "hit"
    print(f"unprofiled: {1000 * (time.perf_counter() - started) / requests:.3f} ms/request")
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(requests):
        client.get(path, headers=headers)
    profiler.disable()
    found: dict[tuple[str, str], float] = {}
    for (filename, _, function), (_, _, _, cumulative, _) in pstats.Stats(profiler).stats.items():  # type: ignore[attr-defined]
        name = (os.path.basename(filename), function)
        found[name] = max(found.get(name, 0.0), cumulative)
    print("profiled, ms per request (cumulative; stages nest inside the last three):")
    for filename, function, label in STAGES:
        print(f"  {label:36s} {1000 * found.get((filename, function), 0.0) / requests:7.3f}")


def best(runs: list[dict]) -> dict:
    return max(runs, key=lambda r: r["rps"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--db", type=int, default=11, help="an empty Redis database; flushed at the end")
    parser.add_argument("--whatif", action="store_true", help="also price auth, rate limit and audit (bench/whatif_app.py)")
    parser.add_argument("--engine", choices=("sqlite", "postgresql"), default="sqlite", help="the store of record")
    parser.add_argument("--no-upstream", action="store_true", help="skip the sekmet-fhir comparison")
    parser.add_argument("--profile", type=int, metavar="N", help="profile N cached requests in-process instead")
    args = parser.parse_args()
    url = f"redis://127.0.0.1:6379/{args.db}"
    store = redis.Redis.from_url(url)
    if store.dbsize():
        sys.exit(f"Redis db {args.db} is not empty; pick an empty one with --db")
    case = bench_case()
    with store_of_record(args.engine) as database_url:
        if args.profile:
            try:
                profile(url, database_url, case, args.profile)
            finally:
                store.flushdb()
            return
        run(args, url, database_url, case, store)


def run(args, url: str, database_url: str, case: dict, store: redis.Redis) -> None:
    procs, handle = [], None
    try:
        key, pid, body = load_patient(url, database_url, case)
        print(f"patient: {resource_count(case)} resources, $everything {len(body)} bytes; store {args.engine}; "
              f"gunicorn -w {args.workers} -k gthread --threads {args.threads}; wrk -t2 -c{args.connections} -d{args.seconds}s")
        env = {"REDIS_URL": url, "GATEWAY_DATABASE_URL": database_url, "GATEWAY_RATE_LIMIT": "100000000/minute",
               "BENCH_BODY_KEY": BODY_KEY}
        gateway, gport = gunicorn("service.wsgi:app", env, args.workers, args.threads)
        baseline, bport = gunicorn("baseline_app:app", env, args.workers, args.threads)
        procs += [gateway, baseline]
        if not args.no_upstream:
            handle, upstream_url = load_upstream(case_to_bundle(case))
        path = f"/Patient/{pid}/$everything"
        results: dict[str, list[dict]] = {}
        for _ in range(args.rounds):
            measure("gateway", f"http://127.0.0.1:{gport}{path}", {"X-API-Key": key}, args, results)
            measure("baseline", f"http://127.0.0.1:{bport}{path}", {}, args, results)
        if handle is not None:
            measure("upstream", upstream_url, handle.auth_headers(), args, results)
        if args.whatif:
            whatif(env, path, key, args, results, procs)
        total_rss, worker_rss = peak_rss_mb(gateway.pid)
        g, b = best(results["gateway"]), best(results["baseline"])
        print(f"gateway / baseline: {g['rps'] / b['rps']:.2f} (target >= 0.7)")
        if "upstream" in results:
            print(f"gateway / upstream: {g['rps'] / best(results['upstream'])['rps']:.1f} (target >= 10)")
        for name in [n for n in results if n not in ("gateway", "baseline", "upstream")]:
            print(f"what if {name}: {best(results[name])['rps'] / b['rps']:.2f} x baseline")
        print(f"gateway peak RSS: {total_rss:.0f} MB for master + {args.workers} workers, largest worker {worker_rss:.0f} MB")
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
        if handle is not None:
            from localfhir.server import stop

            stop(handle)
        store.flushdb()


if __name__ == "__main__":
    main()

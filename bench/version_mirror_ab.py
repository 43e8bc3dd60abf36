"""Benchmark 2, the version mirror's share: cached `$everything` through the gateway with the mirror on
(GATEWAY_VERSION_MIRROR_SECONDS=1) and off (0), and the bare baseline, as three gunicorn servers side by side,
measured in short wrk runs in rotating order so that the three figures of one cycle see the same load of the
shared machine. Prints each cycle's ratios and their medians.

    .venv/bin/python bench/version_mirror_ab.py --engine postgresql --db 12 --cycles 8 --seconds 4

Same needs as bench/gateway.py (Redis on 127.0.0.1:6379 with an empty --db, wrk, PostgreSQL for that engine).
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gateway as bench  # noqa: E402  (bench/gateway.py: the store, the patient, gunicorn and wrk helpers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=("sqlite", "postgresql"), default="postgresql")
    parser.add_argument("--db", type=int, default=12, help="an empty Redis database; flushed at the end")
    parser.add_argument("--cycles", type=int, default=8)
    parser.add_argument("--seconds", type=int, default=4)
    args = parser.parse_args()
    url = f"redis://127.0.0.1:6379/{args.db}"
    store = redis.Redis.from_url(url)
    if store.dbsize():
        sys.exit(f"Redis db {args.db} is not empty; pick an empty one with --db")
    procs = []
    try:
        with bench.store_of_record(args.engine) as database_url:
            key, pid, _ = bench.load_patient(url, database_url, bench.bench_case())
            env = {"REDIS_URL": url, "GATEWAY_DATABASE_URL": database_url, "GATEWAY_RATE_LIMIT": "100000000/minute",
                   "BENCH_BODY_KEY": bench.BODY_KEY}
            path = f"/Patient/{pid}/$everything"
            targets: dict[str, tuple[str, dict]] = {}
            for name, app, extra, headers in (("on", "service.wsgi:app", {"GATEWAY_VERSION_MIRROR_SECONDS": "1"}, {"X-API-Key": key}),
                                              ("off", "service.wsgi:app", {"GATEWAY_VERSION_MIRROR_SECONDS": "0"}, {"X-API-Key": key}),
                                              ("baseline", "baseline_app:app", {}, {})):
                proc, port = bench.gunicorn(app, {**env, **extra}, 2, 4)
                procs.append(proc)
                targets[name] = (f"http://127.0.0.1:{port}{path}", headers)
                bench.warm(*targets[name], requests=40)
            order, rows = list(targets), []
            for cycle in range(args.cycles):
                rps = {name: bench.wrk(*targets[name], args.seconds, 16)["rps"] for name in order}
                order = order[1:] + order[:1]
                rows.append(rps)
                print(f"cycle {cycle}: on {rps['on']:.0f}, off {rps['off']:.0f}, baseline {rps['baseline']:.0f} req/s; "
                      f"on/baseline {rps['on'] / rps['baseline']:.2f}, off/baseline {rps['off'] / rps['baseline']:.2f}", flush=True)
            print(f"{args.engine}, medians of {args.cycles} cycles: on / baseline "
                  f"{statistics.median(r['on'] / r['baseline'] for r in rows):.2f}, off / baseline "
                  f"{statistics.median(r['off'] / r['baseline'] for r in rows):.2f}, on / off "
                  f"{statistics.median(r['on'] / r['off'] for r in rows):.2f}")
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
        store.flushdb()


if __name__ == "__main__":
    main()

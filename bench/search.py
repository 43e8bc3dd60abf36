"""Benchmark 1 of issue 11: selective searches stay flat as the store grows (time at 1M / time at 10k <= 2).

    .venv/bin/python bench/search.py --sizes 10000,100000,1000000 --engines sqlite,postgresql

The store grows in steps to each size (bulk inserts of resources and of the index rows store.indexing extracts,
not the REST layer), is ANALYZEd, and then each query runs --runs times through store.search.search; the
median is printed. "Selective" is held constant across sizes: a patient has ~25 Observations whatever N is, and
exactly 20 Procedures carry the rare code, so the ratio measures the index, not a growing answer.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from sqlalchemy import Connection, Engine, Table, create_engine, insert, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from store.indexing import index_rows
from store.schema import INDEX_TABLES, metadata, resources
from store.search import page_statement, search

LOINC, SNOMED = "http://loinc.org", "http://snomed.info/sct"
# Codes from mappings/terminology/loinc.csv and snomed.csv.
OBS_CODES = ["2345-7", "9811-1", "1695-6", "14573-0", "25587-7"]
PROC_CODES = ["287847009", "33149006", "71273005", "174430004", "57238002"]
RARE_PROC = "764677008"
RARE_COUNT = 20                 # the rare code: 20 Procedures, whatever the size
OBS_PER_PATIENT = 25
QUERIES = {
    "Observation?patient=X&code=Y": ("Observation", [("patient", "p-7"), ("code", f"{LOINC}|2345-7")]),
    "Procedure?code=Y&date=ge...": ("Procedure", [("code", f"{SNOMED}|{RARE_PROC}"), ("date", "ge2015-01-01")]),
}
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def make(i: int) -> dict:
    """Resource number i (Observations and Procedures alternate); its patient keeps ~25 Observations."""
    pid = f"p-{(i // 2) // OBS_PER_PATIENT}"
    day = f"20{10 + i % 14:02d}-{1 + i % 12:02d}-{1 + i % 28:02d}"
    if i % 2 == 0:
        return {"resourceType": "Observation", "id": f"o-{i}", "status": "final", "subject": {"reference": f"Patient/{pid}"},
                "code": {"coding": [{"system": LOINC, "code": OBS_CODES[(i // 2) % len(OBS_CODES)]}]},
                "effectiveDateTime": day}
    code = RARE_PROC if i // 2 < RARE_COUNT else PROC_CODES[(i // 2) % len(PROC_CODES)]
    return {"resourceType": "Procedure", "id": f"pr-{i}", "status": "completed", "subject": {"reference": f"Patient/{pid}"},
            "code": {"coding": [{"system": SNOMED, "code": code}]}, "performedDateTime": day}


def load(engine: Engine, start: int, stop: int, chunk: int = 20_000) -> None:
    for lo in range(start, stop, chunk):
        batch = [make(i) for i in range(lo, min(stop, lo + chunk))]
        res_rows: list[dict] = []
        idx_rows: dict[str, list[dict]] = {k: [] for k in INDEX_TABLES}
        for offset, resource in enumerate(batch):
            pk = lo + offset + 1
            pid = resource["subject"]["reference"].split("/")[1]
            res_rows.append({"pk": pk, "res_type": resource["resourceType"], "res_id": resource["id"], "version": 1,
                             "deleted": False, "last_updated": 1_700_000_000_000 + pk, "patient_id": pid,
                             "body": json.dumps(resource)})
            for kind, row in index_rows(resource):
                idx_rows[kind].append({"res_pk": pk, "res_type": resource["resourceType"], "patient_id": pid, **row})
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":   # COPY: executemany is ten times slower at 1M
                _copy(conn, resources, res_rows)
                for kind, rows in idx_rows.items():
                    _copy(conn, INDEX_TABLES[kind], rows)
                continue
            conn.execute(insert(resources), res_rows)
            for kind, rows in idx_rows.items():
                if rows:
                    conn.execute(insert(INDEX_TABLES[kind]), rows)


def _copy(conn: Connection, table: Table, rows: list[dict]) -> None:
    if not rows:
        return
    columns = list(rows[0])
    driver = conn.connection.driver_connection
    assert driver is not None
    cursor = driver.cursor()
    with cursor.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([row[c] for c in columns])


def fresh_engine(name: str, sqlite_path: str, pg_database: str = "gateway_bench_search") -> Engine:
    if name == "sqlite":
        Path(sqlite_path).unlink(missing_ok=True)
        engine = create_engine(f"sqlite:///{sqlite_path}")
    else:
        admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{pg_database}"'))
            conn.execute(text(f'CREATE DATABASE "{pg_database}"'))
        admin.dispose()
        engine = create_engine(PG_ADMIN.rsplit("/", 1)[0] + "/" + pg_database)
    metadata.create_all(engine)
    return engine


def median_ms(engine: Engine, rtype: str, params: list[tuple[str, str]], runs: int) -> tuple[float, float, int]:
    """Median and fastest of `runs` timed searches (the fastest shows the cost without the shared machine's noise)."""
    times, found = [], 0
    with engine.connect() as conn:
        for _ in range(10):   # warm the caches
            search(conn, rtype, params)
        for _ in range(runs):
            t0 = time.perf_counter()
            found = len(search(conn, rtype, params).rows)
            times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), min(times), found


def db_side_ms(engine: Engine, rtype: str, params: list[tuple[str, str]], runs: int) -> float:
    """Median time inside the database alone: PostgreSQL's EXPLAIN ANALYZE planning + execution, or SQLite's
    sqlite3 execute + fetch of the compiled statement (the machine's other load shows less here)."""
    times = []
    with engine.connect() as conn:
        compiled = page_statement(rtype, params).compile(conn)
        if conn.dialect.name == "postgresql":
            for _ in range(runs):
                lines = [r[0] for r in conn.exec_driver_sql(f"EXPLAIN ANALYZE {compiled}", compiled.params)]
                times.append(sum(float(line.split()[2]) for line in lines
                                 if line.startswith(("Planning Time", "Execution Time"))))
        else:
            raw = conn.connection.driver_connection
            assert raw is not None and compiled.positiontup is not None
            args = tuple(compiled.params[k] for k in compiled.positiontup)
            for _ in range(runs):
                t0 = time.perf_counter()
                raw.execute(str(compiled), args).fetchall()
                times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--sqlite-path", default="/tmp/bench_search.db")
    parser.add_argument("--pg-database", default="gateway_bench_search")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    for name in args.engines.split(","):
        engine = fresh_engine(name, args.sqlite_path, args.pg_database)
        results: dict[str, dict[int, float]] = {q: {} for q in QUERIES}
        inside: dict[str, dict[int, float]] = {q: {} for q in QUERIES}
        loaded = 0
        for size in sizes:
            t0 = time.perf_counter()
            load(engine, loaded, size)
            loaded = size
            with engine.begin() as conn:
                conn.execute(text("ANALYZE"))
            print(f"{name}: {size:>9,} resources loaded in {time.perf_counter() - t0:.0f} s", flush=True)
            for label, (rtype, params) in QUERIES.items():
                ms, fastest, found = median_ms(engine, rtype, params, args.runs)
                results[label][size] = ms
                inside[label][size] = db_side_ms(engine, rtype, params, args.runs)
                print(f"  {label:32} {ms:8.2f} ms median, {fastest:6.2f} ms fastest, {inside[label][size]:6.3f} ms "
                      f"in the database  ({found} matches, {args.runs} runs)", flush=True)
        for label, by_size in results.items():
            ratio = by_size[sizes[-1]] / by_size[sizes[0]]
            db_ratio = inside[label][sizes[-1]] / inside[label][sizes[0]]
            print(f"{name}: {label}: time({sizes[-1]:,}) / time({sizes[0]:,}) = {ratio:.2f} end to end, "
                  f"{db_ratio:.2f} in the database", flush=True)
        engine.dispose()


if __name__ == "__main__":
    main()

"""Bulk data benchmarks, ratios in one run (bench/README.md):

1. import throughput (resources/s through store/bulk.py into a fresh SQLite file, or PostgreSQL database) /
   "parse + validation alone" (json.loads and the same Bundle planning with fhir.resources validation, no
   database) on the same NDJSON, alternately in --import-rounds rounds: the median ratio;
2. export throughput (workers/bulk_export.py's keyset stream to an NDJSON file) / a plain streaming read of the
   same rows (one SELECT body ... ORDER BY pk, written to a file), on three sizes (the last: rows copied in SQL);
3. peak RSS of a child process importing NDJSON of two sizes: flat memory means the same peak for both.

    .venv/bin/python bench/bulk.py [--repeat 4] [--rss-mb 2 8] [--import-rounds 3] [--engines sqlite,postgresql]

The NDJSON is the vendored Synthea slice (tests/data/bulk/) repeated with new ids: every patient-linked resource
gets a copy prefix, its literal references follow; the Practitioners, Organizations and Locations are kept once,
so the copies' conditional references resolve to them.
"""
from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import pydantic
from sqlalchemy import select, text

from mappings.errors import Issue
from mappings.fhir_validation import model_class
from store import bulk, bundle_plan, db
from store.bundle_plan import plan_bundle
from store.schema import resources

CORPUS = REPO / "tests" / "data" / "bulk" / "synthea-4-patients"
SHARED = ("Organization", "Location", "Practitioner", "PractitionerRole")
LITERAL = re.compile(r'"reference":"(Patient|Encounter|Condition|MedicationRequest)/')


def corpus(copies: int, out: Path) -> int:
    """Write `copies` copies of the slice with new ids to `out`; the number of lines."""
    lines = [line for p in sorted(CORPUS.glob("*.ndjson")) for line in p.read_text(encoding="utf-8").splitlines() if line]
    shared = [line for line in lines if json.loads(line)["resourceType"] in SHARED]
    own = [line for line in lines if json.loads(line)["resourceType"] not in SHARED]
    count = 0
    with out.open("w", encoding="utf-8") as handle:
        for line in shared:
            handle.write(line + "\n")
            count += 1
        for k in range(copies):
            prefix = f"c{k}-"
            for line in own:
                r = json.loads(line)
                text = LITERAL.sub(rf'"reference":"\1/{prefix}', line)
                text = text.replace(f'"id":"{r["id"]}"', f'"id":"{prefix}{r["id"]}"', 1)
                handle.write(text + "\n")
                count += 1
    return count


def fhir_resources_issues(resource: object, path: str = "$") -> list[Issue]:
    """The baseline's validator: fhir.resources model_validate, as mappings/fhir_validation.resource_issues was
    before the write path moved to fhirkit-rs. The baseline stays "parse + fhir.resources validation" whatever
    validator the write path uses (bench/ingest.py's baseline is model_validate too)."""
    if not isinstance(resource, dict):
        return [Issue(path, "a resource must be a JSON object", "structure")]
    try:
        model_class(resource["resourceType"]).model_validate(resource)
    except pydantic.ValidationError as exc:
        return [Issue(path, str(exc), "structure")]
    return []


def parse_and_validate(path: Path) -> float:
    """json.loads and the import's Bundle planning, with fhir.resources as the validator (see above)."""
    planner_validator = bundle_plan.resource_issues
    bundle_plan.resource_issues = fhir_resources_issues
    try:
        start = time.perf_counter()
        for batch in bulk._batches(bulk.read_lines(path, path.name), bulk.chunk_size()):
            parsed = [bulk.parse(line) for line in batch]
            entries = [{"resource": p.resource, "request": {"method": "PUT", "url": f"{p.rtype}/{p.resource['id']}"}}
                       for p in parsed if not p.issues and p.resource]
            plan_bundle({"resourceType": "Bundle", "type": "batch", "entry": entries}, len(entries))
        return time.perf_counter() - start
    finally:
        bundle_plan.resource_issues = planner_validator


def run_import(path: Path, folder: Path, url: str | None = None) -> tuple[float, object]:
    folder.mkdir(parents=True, exist_ok=True)
    engine = db.engine_for(url or f"sqlite:///{folder / 'bench.sqlite3'}")
    state = bulk.new_state([(path.name, path)], "lenient")
    start = time.perf_counter()
    bulk.ImportRun(engine, folder / "result", state).run()
    elapsed = time.perf_counter() - start
    assert not state["errors"], state["errors"]
    return elapsed, engine


def _postgres_database() -> str:
    sys.path.insert(0, str(REPO / "tests"))
    from databases import create_postgres_database

    return create_postgres_database("bench_bulk")


def _drop_postgres_database(url: str | None) -> None:
    from databases import drop_postgres_database

    assert url is not None
    db.engine_for(url).dispose()
    drop_postgres_database(url)


def run_export(engine, folder: Path, rounds: int = 5) -> tuple[float, float, int]:
    """(best time of our export, best time of the plain read, rows): best of `rounds`, the machine being shared."""
    from workers import bulk_export

    with db.reading(engine) as conn:
        types = sorted({t for (t,) in conn.execute(select(resources.c.res_type).distinct())})
    ours = plain = float("inf")
    exported = 0
    for _ in range(rounds):
        # A real export writes new files in its job's own folder: the last round's files go first, untimed, so
        # neither side pays for truncating them.
        for stale in folder.glob("*.ndjson"):
            if stale.name != "corpus.ndjson" and not stale.name.startswith("rss-"):
                stale.unlink()
        start = time.perf_counter()
        exported = sum(bulk_export._write(folder / f"{rtype}.ndjson", bulk_export._rows(engine, rtype, {"level": "system"}, None))
                       for rtype in types)
        ours = min(ours, time.perf_counter() - start)
        start = time.perf_counter()
        with engine.connect() as conn, (folder / "plain.ndjson").open("w", encoding="utf-8") as handle:
            result = conn.execution_options(yield_per=1000).execute(
                select(resources.c.body).where(resources.c.deleted.is_(False)).order_by(resources.c.res_type, resources.c.pk))
            for (body,) in result:
                handle.write(body)
                handle.write("\n")
        plain = min(plain, time.perf_counter() - start)
    return ours, plain, exported


def grown(engine, copies: int):
    """The resources table copied `copies` times more under new ids, in SQL (export reads only this table)."""
    with engine.begin() as conn:
        for k in range(copies):
            conn.execute(text(
                "INSERT INTO resources (res_type, res_id, version, deleted, last_updated, patient_id, body) "
                "SELECT res_type, res_id || :suffix, version, deleted, last_updated, patient_id, body FROM resources "
                "WHERE res_id NOT LIKE '%-x%'"), {"suffix": f"-x{k}"})
    return engine


def child_rss(path: Path, folder: Path) -> float:
    """Peak RSS (MB) of a fresh process importing path."""
    out = subprocess.run([sys.executable, __file__, "--child", str(path), str(folder)], capture_output=True, text=True,
                         check=True, cwd=REPO)
    return float(out.stdout.strip().splitlines()[-1])


def child(path: Path, folder: Path) -> None:
    """The measured process: imports path into a fresh SQLite file, prints its peak RSS in MB."""
    engine = db.engine_for(f"sqlite:///{folder / 'rss.sqlite3'}")
    bulk.ImportRun(engine, folder / "rss-result", bulk.new_state([(path.name, path)], "lenient")).run()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=4, help="copies of the slice's patients (1 copy: 366 resources)")
    parser.add_argument("--rss-mb", type=int, nargs=2, default=[2, 8], help="two NDJSON sizes (MB) for the RSS check")
    parser.add_argument("--import-rounds", type=int, default=3, help="alternate rounds of validation and import")
    parser.add_argument("--engines", default="sqlite", help="import on sqlite and/or postgresql (TEST_POSTGRES_URL)")
    parser.add_argument("--child", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    with tempfile.TemporaryDirectory(prefix="bench-bulk-") as tmp:
        folder = Path(tmp)
        path = folder / "corpus.ndjson"
        lines = corpus(args.repeat, path)
        mb = path.stat().st_size / 1e6
        engine = None
        for name in args.engines.split(","):
            rounds = []
            for k in range(args.import_rounds):
                # Alternately, round by round: validation alone, then the import into a fresh database.
                validation = parse_and_validate(path)
                url = None if name == "sqlite" else _postgres_database()
                imported, imported_into = run_import(path, folder / f"{name}-{k}", url)
                rounds.append((validation / imported, lines / imported, lines / validation))
                if name == "sqlite":
                    engine = imported_into
                else:
                    _drop_postgres_database(url)
            ratio, ours_rate, base_rate = sorted(rounds)[len(rounds) // 2]
            print(f"1. {name}: import of {lines} resources ({mb:.1f} MB): {ours_rate:.0f} res/s; parse + validation alone "
                  f"{base_rate:.0f} res/s; ratio {ratio:.2f} (median of {len(rounds)} rounds: "
                  f"{', '.join(f'{r[0]:.2f}' for r in rounds)}) (target >= 0.6)", flush=True)
        if engine is None:
            _, engine = run_import(path, folder / "sqlite-export")
        ours, plain, exported = run_export(engine, folder)
        print(f"2. export of {exported} resources: {exported / ours:.0f} res/s; plain streaming read "
              f"{exported / plain:.0f} res/s; ratio {plain / ours:.2f} (target >= 0.5)")
        peaks = []
        per_copy_mb = mb / args.repeat
        for size in args.rss_mb:
            copies = max(1, round(size / per_copy_mb))
            sized = folder / f"rss-{size}.ndjson"
            n = corpus(copies, sized)
            for stale in folder.glob("rss.sqlite3*"):
                stale.unlink()
            peaks.append((size, n, sized.stat().st_size / 1e6, child_rss(sized, folder)))
        for size, n, real_mb, peak in peaks:
            print(f"3. peak RSS importing {real_mb:.1f} MB ({n} resources): {peak:.0f} MB")
        # The export again on the larger database the last child left: one file per type costs a fixed overhead
        # (open, one read transaction) that a small export cannot amortise.
        ours, plain, exported = run_export(db.engine_for(f"sqlite:///{folder / 'rss.sqlite3'}"), folder)
        print(f"2b. export of {exported} resources: {exported / ours:.0f} res/s; plain streaming read "
              f"{exported / plain:.0f} res/s; ratio {plain / ours:.2f} (target >= 0.5)")
        big = grown(db.engine_for(f"sqlite:///{folder / 'rss.sqlite3'}"), 9)
        ours, plain, exported = run_export(big, folder, rounds=3)
        print(f"2c. export of {exported} resources (rows copied in SQL): {exported / ours:.0f} res/s; plain streaming "
              f"read {exported / plain:.0f} res/s; ratio {plain / ours:.2f} (target >= 0.5)")
        print(f"   this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB peak")


if __name__ == "__main__":
    main()

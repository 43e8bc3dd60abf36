"""Benchmark 1 (+7): case documents of seed size -> validated FHIR Bundles, single process.

Baseline, same run: fhir.resources validating every resource of the produced Bundles alone
(mappings.fhir_validation.resource_issues). Rounds alternate mapping and baseline so noise hits both.
Run: .venv/bin/python bench/mapping.py [--cases 200] [--rounds 3]
"""
from __future__ import annotations

import argparse
import datetime as dt
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cohort import seed_sized  # noqa: E402

from mappings import case_validation  # noqa: E402
from mappings.case_bundle import case_to_bundle  # noqa: E402
from mappings.fhir_validation import resource_issues  # noqa: E402

RECORDED = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def map_all(cases: list[dict]) -> tuple[float, list[dict]]:
    start = time.perf_counter()
    bundles = [case_to_bundle(c, RECORDED) for c in cases]
    return time.perf_counter() - start, bundles


def validate_all(bundles: list[dict]) -> float:
    start = time.perf_counter()
    for bundle in bundles:
        for n, entry in enumerate(bundle["entry"]):
            assert not resource_issues(entry["resource"], f"Bundle.entry[{n}].resource")
    return time.perf_counter() - start


def schema_check_costs(cases: list[dict]) -> tuple[float, float]:
    """Seconds of the case schema check: the compiled check (fastjsonschema), and plain jsonschema."""
    start = time.perf_counter()
    assert all(case_validation._certainly_valid()(c) for c in cases)
    fast = time.perf_counter() - start
    start = time.perf_counter()
    for c in cases:
        assert not list(case_validation._validator().iter_errors(c))
    return fast, time.perf_counter() - start


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    cases = seed_sized(args.cases, args.seed)
    map_all(cases[:5])  # warm caches (schema, terminology, model classes)
    rss_before = peak_rss_mb()
    mapped = validated = 0.0
    for _ in range(args.rounds):
        seconds, bundles = map_all(cases)
        mapped += seconds
        validated += validate_all(bundles)
    n = args.cases * args.rounds
    resources = sum(len(b["entry"]) for b in bundles) * args.rounds
    fast, slow = schema_check_costs(cases)
    print(f"cases: {args.cases} x {args.rounds} rounds, {resources / n:.1f} resources/case (seed cases: 34 and 37)")
    print(f"mapping (case_to_bundle):        {n / mapped:7.1f} cases/s  {mapped / n * 1000:6.2f} ms/case  {resources / mapped:7.0f} resources/s")
    print(f"baseline (resource_issues only): {n / validated:7.1f} cases/s  {validated / n * 1000:6.2f} ms/case  {resources / validated:7.0f} resources/s")
    print(f"ratio mapping / baseline:        {mapped / validated:7.2f}   (target <= 1.5)")
    print(f"mapping without validation:      {(mapped - validated) / n * 1000:6.2f} ms/case (by difference)")
    print(f"target 300 cases/s/core:         {'met' if n / mapped >= 300 else 'missed'}; validation alone allows at most {n / validated:.0f}/s")
    print(f"case schema check: fastjsonschema {fast / args.cases * 1000:.2f} ms/case, jsonschema {slow / args.cases * 1000:.2f} ms/case")
    print(f"peak RSS: {peak_rss_mb():.0f} MB (after warm-up {rss_before:.0f} MB)")


if __name__ == "__main__":
    main()

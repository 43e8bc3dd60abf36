"""Benchmark 5: treatment lines (treatment_lines.engine.summarise) for 1,000 and 10,000 generated patients.

Each patient's FHIR resources are mapped from a generated case (bench/cohort.py) just before it is
summarised; only summarise() and the cohort aggregate are timed. Target: 10k time / 1k time <= 11.
Run: .venv/bin/python bench/lines.py [--sizes 1000 10000]
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
from cohort import cohort  # noqa: E402

from mappings.case_bundle import map_resources  # noqa: E402
from treatment_lines.aggregate import aggregate  # noqa: E402
from treatment_lines.engine import summarise  # noqa: E402


def run(size: int, seed: int) -> tuple[float, float, int, int]:
    """(seconds in summarise, seconds in aggregate, resources summarised, lines found) for `size` patients."""
    summaries, spent, resources = [], 0.0, 0
    for case in cohort(size, seed):
        mapped = map_resources(case)[1]  # the Bundle's resources, without the Provenance and FHIR validation
        resources += len(mapped)
        start = time.perf_counter()
        summaries.append(summarise(mapped))
        spent += time.perf_counter() - start
    start = time.perf_counter()
    aggregate(summaries)
    return spent, time.perf_counter() - start, resources, sum(len(s["lines"]) for s in summaries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs=2, default=[1000, 10000])
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    run(20, args.seed + 1)  # warm-up: rule pack, terminology, imports
    totals = []
    for size in args.sizes:
        spent, agg, resources, lines = run(size, args.seed)
        totals.append(spent + agg)
        print(f"{size:6d} patients: summarise {spent:7.2f} s = {spent / size * 1000:6.2f} ms/patient "
              f"({resources / size:.1f} resources, {lines / size:.2f} lines/patient); aggregate {agg * 1000:7.1f} ms")
    ratio = totals[1] / totals[0]
    print(f"time {args.sizes[1]} / {args.sizes[0]}: {ratio:.2f} (target <= {args.sizes[1] / args.sizes[0] * 1.1:.0f})")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()

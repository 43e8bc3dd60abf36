"""Benchmark 5: treatment lines (treatment_lines.engine.summarise).

Part A, cohort: 1,000 and 10,000 generated pNET patients (bench/cohort.py), each mapped just before it is
summarised; only summarise() and the cohort aggregate are timed. Target: 10k time / 1k time <= 11.
Part B, long histories: one plain-FHIR patient of 100, 1,000 and 10,000 resources (regimens of chemotherapy
administrations every 14 days with antiemetics, G-CSF and radiotherapy, labs, encounters), ms per patient
and the 10k/1k ratio. Target: 10,000 resources under 1 s, ratio <= 15.
Run: .venv/bin/python bench/lines.py [--sizes 1000 10000] [--resources 100 1000 10000] [--only cohort|long]
"""
from __future__ import annotations

import argparse
import datetime as dt
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
from cohort import cohort

from mappings.case_bundle import map_resources
from treatment_lines.aggregate import aggregate
from treatment_lines.engine import summarise

RXN, SCT, LOINC = "http://www.nlm.nih.gov/research/umls/rxnorm", "http://snomed.info/sct", "http://loinc.org"
# Regimens in turn (RxNorm ingredient codes of mappings/drugs/agents.csv), one every ~6 months.
REGIMENS = [[("32592", "oxaliplatin"), ("6313", "leucovorin"), ("4492", "fluorouracil")],
            [("51499", "irinotecan"), ("6313", "leucovorin"), ("4492", "fluorouracil"), ("253337", "bevacizumab")],
            [("318341", "cetuximab")], [("1312397", "regorafenib")]]
LABS = [("718-7", "Hemoglobin"), ("6690-2", "Leukocytes"), ("777-3", "Platelets"), ("2039-6", "CEA")]


def long_history(target: int) -> list[dict]:
    """A plain FHIR history of about `target` resources: per 14-day cycle 3-4 administrations, an antiemetic,
    labs and an encounter; a new regimen every 12 cycles; radiotherapy now and then."""
    day0 = dt.date(2010, 1, 4)
    out: list[dict] = [{"resourceType": "Patient", "id": "long", "birthDate": "1955-03-01"},
                       {"resourceType": "Condition", "id": "crc", "onsetDateTime": day0.isoformat(),
                        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "C18.7"}],
                                 "text": "Adenocarcinoma of sigmoid colon"}}]
    cycle = 0
    while len(out) < target:
        when = (day0 + dt.timedelta(days=14 * cycle)).isoformat()
        regimen = REGIMENS[(cycle // 12) % len(REGIMENS)]
        for code, name in regimen:
            out.append({"resourceType": "MedicationAdministration", "id": f"c{cycle}-{name}", "status": "completed",
                        "subject": {"reference": "Patient/long"}, "effectiveDateTime": when,
                        "medicationCodeableConcept": {"coding": [{"system": RXN, "code": code}], "text": name}})
        out.append({"resourceType": "MedicationAdministration", "id": f"c{cycle}-ondansetron", "status": "completed",
                    "subject": {"reference": "Patient/long"}, "effectiveDateTime": when,
                    "medicationCodeableConcept": {"coding": [{"system": RXN, "code": "26225"}], "text": "ondansetron"}})
        for code, name in LABS:
            out.append({"resourceType": "Observation", "id": f"c{cycle}-{code}", "status": "final",
                        "code": {"coding": [{"system": LOINC, "code": code}], "text": name},
                        "effectiveDateTime": when, "valueQuantity": {"value": 10 + cycle % 7}})
        out.append({"resourceType": "Encounter", "id": f"c{cycle}-visit", "status": "finished",
                    "period": {"start": when, "end": when}})
        if cycle % 40 == 39:
            out.append({"resourceType": "Procedure", "id": f"c{cycle}-rt", "status": "completed",
                        "code": {"coding": [{"system": SCT, "code": "33195004"}]}, "performedDateTime": when,
                        "bodySite": [{"text": "Thoracic vertebra"}]})
        cycle += 1
    return out[:target]


def time_long(sizes: list[int]) -> None:
    summarise(long_history(200))  # warm-up: rule pack, lexicon, imports
    spent = {}
    for size in sizes:
        history = long_history(size)
        runs = max(5, min(20, 20_000 // size))  # at least 5: the best of too few runs of the largest history is noise
        cpu, wall = [], []
        for _ in range(runs):
            start, start_cpu = time.perf_counter(), time.process_time()
            summary = summarise(history)
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
        # The machine is shared: CPU time of this process is the steadier figure; the best wall time is shown too.
        spent[size] = min(cpu)
        print(f"{size:6d} resources: {min(cpu) * 1000:8.1f} ms CPU/patient, best wall {min(wall) * 1000:8.1f} ms "
              f"({len(summary['lines'])} lines; best of {runs} runs)")
    if 1000 in spent and 10000 in spent:
        print(f"time 10,000 / 1,000 resources: {spent[10000] / spent[1000]:.2f} (target <= 15)")


def run(size: int, seed: int) -> tuple[float, float, int, int]:
    """(seconds in summarise, seconds in aggregate, resources summarised, lines found) for `size` patients."""
    summaries, spent, resources = [], 0.0, 0
    for case in cohort(size, seed):
        mapped = map_resources(case)[1]  # the Bundle's resources, without the Provenance and FHIR validation
        resources += len(mapped)
        start = time.process_time()  # CPU time: the machine is shared, wall time measures the neighbours
        summaries.append(summarise(mapped))
        spent += time.process_time() - start
    start = time.process_time()
    aggregate(summaries)
    return spent, time.process_time() - start, resources, sum(len(s["lines"]) for s in summaries)


def time_cohort(sizes: list[int], seed: int) -> None:
    run(20, seed + 1)  # warm-up: rule pack, terminology, imports
    totals = []
    for size in sizes:
        spent, agg, resources, lines = run(size, seed)
        totals.append(spent + agg)
        print(f"{size:6d} patients: summarise {spent:7.2f} s CPU = {spent / size * 1000:6.2f} ms/patient "
              f"({resources / size:.1f} resources, {lines / size:.2f} lines/patient); aggregate {agg * 1000:7.1f} ms")
    ratio = totals[1] / totals[0]
    print(f"time {sizes[1]} / {sizes[0]}: {ratio:.2f} (target <= {sizes[1] / sizes[0] * 1.1:.0f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs=2, default=[1000, 10000])
    parser.add_argument("--resources", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--only", choices=["cohort", "long"])
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.only != "cohort":
        time_long(args.resources)
    if args.only != "long":
        time_cohort(args.sizes, args.seed)
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()

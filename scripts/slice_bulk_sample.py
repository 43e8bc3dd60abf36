"""Cut the small Synthea slice vendored under tests/data/bulk/synthea-4-patients/ from the SMART sample bulk export.

    python scripts/slice_bulk_sample.py SOURCE_DIR tests/data/bulk/synthea-4-patients

SOURCE_DIR holds the NDJSON files of the `10-patients` branch of github.com/smart-on-fhir/sample-bulk-fhir-datasets
(Apache-2.0). The slice keeps the four patients with the fewest resources and everything of theirs, plus every
Organization, Location, Practitioner and PractitionerRole: the targets of the files' conditional references
(`Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|...`, `Location?identifier=...`, `Organization?identifier=...`).
Lines are copied byte for byte, in their original order.
"""
from __future__ import annotations

import collections
import json
import sys
from pathlib import Path

SHARED_TYPES = ("Organization", "Location", "Practitioner", "PractitionerRole")
PATIENTS_KEPT = 4


def _patient(resource: dict) -> str | None:
    if resource.get("resourceType") == "Patient":
        return resource["id"]
    ref = (resource.get("subject") or resource.get("patient") or {}).get("reference", "")
    return ref.split("/", 1)[1] if ref.startswith("Patient/") else None


def main(source: Path, target: Path) -> None:
    files = sorted(source.glob("*.ndjson"))
    sizes: collections.Counter[str] = collections.Counter()
    for path in files:
        for line in path.open(encoding="utf-8"):
            pid = _patient(json.loads(line))
            if pid and "resourceType" in line:
                sizes[pid] += 1
    kept = {pid for pid, _ in sorted(sizes.items(), key=lambda kv: (kv[1], kv[0]))[:PATIENTS_KEPT]}
    target.mkdir(parents=True, exist_ok=True)
    for path in files:
        if path.name == "log.ndjson":
            continue
        lines = [line for line in path.open(encoding="utf-8")
                 if path.name.split(".")[0] in SHARED_TYPES or _patient(json.loads(line)) in kept]
        if lines:
            (target / path.name).write_text("".join(lines), encoding="utf-8")
            print(f"{path.name}: {len(lines)}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))

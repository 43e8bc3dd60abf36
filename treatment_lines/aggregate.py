"""Across patients: per line number and modality, how many lines, how long, and how soon the next one."""
from __future__ import annotations

from statistics import median


def _median(values: list[int]) -> float | None:
    return float(median(values)) if values else None


def aggregate(summaries: list[dict]) -> dict:
    """Counts and medians in days; lines whose duration or time to next treatment is unknown are counted apart."""
    groups: dict[tuple[int, str], dict] = {}
    for summary in summaries:
        for line in summary["lines"]:
            group = groups.setdefault((line["number"], line["modality"]), {"count": 0, "durations": [], "ttnt": []})
            group["count"] += 1
            if line["duration"]["days"] is not None:
                group["durations"].append(line["duration"]["days"])
            if line["timeToNextTreatment"]["days"] is not None:
                group["ttnt"].append(line["timeToNextTreatment"]["days"])
    return {
        "rulePackVersions": sorted({s["rulePackVersion"] for s in summaries}),
        "patients": len(summaries),
        "groups": [{
            "line": number, "modality": modality, "count": g["count"],
            "medianDurationDays": _median(g["durations"]), "durationKnown": len(g["durations"]),
            "medianTimeToNextTreatmentDays": _median(g["ttnt"]), "timeToNextTreatmentKnown": len(g["ttnt"]),
        } for (number, modality), g in sorted(groups.items())],
    }

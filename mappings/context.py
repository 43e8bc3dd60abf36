"""What every per-resource mapper needs: the case, its resolved timeline, and the fullUrl of each fact."""
from __future__ import annotations

from dataclasses import dataclass, field

from mappings import fhir_time
from mappings.fhir_vocabulary import LOCAL_EXT, MCODE
from mappings.references import fact_identifier, full_url
from mappings.timeline import Point, Timeline

# The URL bases are re-exported: every mapper imports them from here together with MapContext.
__all__ = ["LOCAL_EXT", "MCODE", "TIME_PATH", "MapContext"]
# The element of each resource type that holds an event's time, for cqf-relativeDateTime.targetPath.
TIME_PATH = {"Condition": "onset", "Procedure": "performed", "MedicationStatement": "effective",
             "Observation": "effective", "Patient": "deceased", "Encounter": "period"}


@dataclass
class MapContext:
    case: dict
    timeline: Timeline
    urls: dict[str, str] = field(default_factory=dict)   # fact id -> fullUrl of its (first) resource
    types: dict[str, str] = field(default_factory=dict)  # fact id -> resource type
    # The submitting source whose namespace the identifiers take (references.fact_system); None: source-neutral.
    source: str | None = None

    @property
    def case_id(self) -> str:
        return self.case["caseId"]

    def identifier(self, fact_id: str, part: str | None = None) -> dict:
        return fact_identifier(self.case_id, fact_id, part, self.source)

    def register(self, fact_id: str, resource_type: str, part: str | None = None) -> str:
        url = full_url(self.identifier(fact_id, part))
        self.urls.setdefault(fact_id, url)
        self.types.setdefault(fact_id, resource_type)
        return url

    def ref(self, fact_id: str, display: str | None = None) -> dict:
        result = {"reference": self.urls[fact_id]}
        if display:
            result["display"] = display
        return result

    @property
    def patient_ref(self) -> dict:
        return {"reference": self.urls["patient"]}

    def time_extensions(self, start: Point, end: Point | None = None, length: dict | None = None) -> list[dict]:
        """The event-time extension plus cqf-relativeDateTime for a relative start, as a resource extension list."""
        extensions = [fhir_time.event_time_extension(start, end, length)]
        extensions += self.relative_extensions(start)
        return extensions

    def relative_extensions(self, point: Point | None) -> list[dict]:
        if point is None or point.relation is None or point.relation.target not in self.urls:
            return []
        target = point.relation.target
        path = TIME_PATH.get(self.types.get(target, ""), "effective")
        ext = fhir_time.relative_extension(point, self.urls[target], path)
        return [ext] if ext else []

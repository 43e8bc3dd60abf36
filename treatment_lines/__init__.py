"""Treatment-line engine: reads one patient's FHIR R4 history into lines of therapy (a pure library)."""
from __future__ import annotations


def summarise(resources: list[dict], rules: dict | None = None) -> dict:
    """The treatment-line summary of one patient (treatment_lines.engine.summarise)."""
    from treatment_lines.engine import (
        summarise as _summarise,  # imported here: the package stays cheap to import
    )

    return _summarise(resources, rules)

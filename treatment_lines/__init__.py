"""Treatment-line engine: reads one patient's FHIR R4 history into lines of therapy (a pure library)."""

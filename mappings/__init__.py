"""Case data (format v1) to FHIR R4: terminology tables as data, one mapper per resource type."""

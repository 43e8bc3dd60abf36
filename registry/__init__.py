"""Registry views: normalised procedure histories built from the FHIR resources of the store."""

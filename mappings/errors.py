"""The errors every layer raises for bad input (mappings, store, workers, engines), in one module; the gateway turns
them into an OperationOutcome with the failing path in one place (service/__init__.py)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Issue:
    """One input problem: a JSON path into the submitted document, a message and an issue-type code."""

    path: str
    message: str
    code: str = "invalid"  # FHIR issue-type: invalid, structure, required, value, code-invalid, not-found, invariant, too-long
    severity: str = "error"


class InputError(Exception):
    """The input cannot be used (a case document, a FHIR resource or Bundle, a search or a parameter); carries every
    problem found and the HTTP status that fits.

    400: malformed or not matching the schema; 415: wrong media type; 422: well-formed but meaningless
    (unknown codes, references to missing facts, an unresolvable timeline).
    """

    def __init__(self, issues: list[Issue], status: int = 400):
        super().__init__("; ".join(f"{i.path}: {i.message}" for i in issues[:5]))
        self.issues = issues
        self.status = status


class FhirValidationError(Exception):
    """A generated or submitted FHIR resource failed fhir.resources validation."""

    def __init__(self, issues: list[Issue]):
        super().__init__("; ".join(f"{i.path}: {i.message}" for i in issues[:5]))
        self.issues = issues

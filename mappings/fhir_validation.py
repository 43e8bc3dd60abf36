"""Structural validation of R4 JSON with fhir.resources (its R4B models read R4 JSON for these resource types)."""
from __future__ import annotations

from functools import lru_cache

import pydantic
from fhir.resources.R4B import get_fhir_model_class

from mappings.case_validation import json_path
from mappings.errors import Issue


@lru_cache(maxsize=None)
def model_class(resource_type: str):
    """The fhir.resources model for a resource type; ValueError for names that are not R4 resources."""
    cls = get_fhir_model_class(resource_type)
    if not hasattr(cls, "get_resource_type"):
        raise ValueError(f"{resource_type} is not a resource type")
    return cls


def resource_issues(resource: object, path: str = "$") -> list[Issue]:
    """Every structural problem of one resource, with JSON paths under `path`; empty when valid."""
    if not isinstance(resource, dict):
        return [Issue(path, "a resource must be a JSON object", "structure")]
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str):
        return [Issue(f"{path}.resourceType", "resourceType is missing", "required")]
    try:
        cls = model_class(resource_type)
    except (ValueError, AttributeError, KeyError):
        return [Issue(f"{path}.resourceType", f"'{resource_type}' is not an R4 resource type", "code-invalid")]
    try:
        cls.model_validate(resource)
    except pydantic.ValidationError as exc:
        return [Issue(path + json_path(list(err["loc"]))[1:], err["msg"], "structure") for err in exc.errors()]
    return []

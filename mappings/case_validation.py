"""Checks a case document: JSON Schema first, then what a schema cannot say (ids, references, concept keys)."""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Callable

import fastjsonschema
import jsonschema

from mappings import terminology
from mappings.errors import InputError, Issue
from mappings.timeline import RESERVED_IDS

SCHEMA_PATH = Path(__file__).parent / "case_schema_v1.json"
SECTIONS = ("conditions", "observations", "procedures", "medications", "outcomes")
# Fields holding a reference to another fact, and the sections the target may come from (None: any).
FACT_REFS = {"primary": ("conditions",), "dueTo": ("procedures", "medications"), "specimenFrom": ("procedures",),
             "focus": ("conditions",), "reason": None, "target": ("conditions",), "combinedWith": ("procedures", "medications"),
             "treatments": ("procedures", "medications"), "evidence": ("observations",), "manifestations": ("conditions",)}
CONCEPT_FIELDS = ("concept", "histology", "valueConcept")


@lru_cache(maxsize=1)
def schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(schema())


@lru_cache(maxsize=1)
def _certainly_valid() -> Callable[[object], bool]:
    """A compiled yes/no check; only a "no" pays for jsonschema, which then lists every issue with its path.

    fastjsonschema stops at the first error and words it its own way, so it only decides whether jsonschema
    must run. use_default=False: it would otherwise write the schema's defaults into the caller's document.
    """
    validate = fastjsonschema.compile(schema(), use_default=False, use_formats=False)

    def check(case: object) -> bool:
        try:
            validate(case)
        except fastjsonschema.JsonSchemaValueException:
            return False
        return True
    return check


def json_path(parts) -> str:
    path = "$"
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _schema_issue(error: jsonschema.ValidationError) -> Issue:
    path = json_path(error.absolute_path)
    if error.validator == "additionalProperties":
        return Issue(path, error.message, "structure")
    if error.validator == "required":
        return Issue(path, error.message, "required")
    if error.validator in ("enum", "const"):
        return Issue(path, f"{error.instance!r} is not one of {error.validator_value}", "code-invalid")
    if error.validator == "oneOf" and isinstance(error.instance, dict):
        return Issue(path, "give exactly one of the alternatives: " + _alternatives(error.validator_value), "invalid")
    return Issue(path, error.message, "value" if error.validator not in ("type",) else "structure")


def _alternatives(options: list[dict]) -> str:
    return ", ".join("/".join(o.get("required", ["?"])) for o in options)


def check_case(case: object) -> dict:
    """Raise InputError listing every problem of the document; return it, now known to be a case, when it can be
    mapped."""
    # The compiled check passes valid documents cheaply; jsonschema lists the issues of the rest.
    issues = [] if _certainly_valid()(case) else [
        _schema_issue(e) for e in sorted(_validator().iter_errors(case), key=lambda e: list(e.absolute_path))]
    if issues:
        raise InputError(_dedupe(issues))
    assert isinstance(case, dict)  # the schema's root is an object
    issues = _check_ids(case) + _check_concepts(case)
    if issues:
        raise InputError(issues, 422)
    return case


def _dedupe(issues: list[Issue]) -> list[Issue]:
    seen, result = set(), []
    for issue in issues:
        if (issue.path, issue.message) not in seen:
            seen.add((issue.path, issue.message))
            result.append(issue)
    return result


def _facts(case: dict):
    for section in SECTIONS:
        for i, fact in enumerate(case.get(section, [])):
            yield section, i, fact


def _check_ids(case: dict) -> list[Issue]:
    issues: list[Issue] = []
    owner: dict[str, tuple[str, str]] = {}
    for section, i, fact in _facts(case):
        fid = fact["id"]
        if fid in RESERVED_IDS or fid == "patient":
            issues.append(Issue(f"$.{section}[{i}].id", f"'{fid}' is reserved for the patient's own events", "value"))
        elif fid in owner:
            issues.append(Issue(f"$.{section}[{i}].id", f"duplicate fact id '{fid}' (first used at {owner[fid][1]})", "value"))
        else:
            owner[fid] = (section, f"$.{section}[{i}]")
    for section, i, fact in _facts(case):
        for field, allowed in FACT_REFS.items():
            values = fact.get(field)
            if values is None:
                continue
            for j, target in enumerate(values if isinstance(values, list) else [values]):
                path = f"$.{section}[{i}].{field}" + (f"[{j}]" if isinstance(values, list) else "")
                if target not in owner:
                    issues.append(Issue(path, f"refers to '{target}', which is not a fact of this case", "not-found"))
                elif allowed and owner[target][0] not in allowed:
                    issues.append(Issue(path, f"'{target}' is a {owner[target][0][:-1]}; expected one of {', '.join(allowed)}", "value"))
    return issues


def _check_concepts(case: dict) -> list[Issue]:
    issues = []

    def walk(node, parts):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in CONCEPT_FIELDS and isinstance(value, str) and not terminology.known(value):
                    issues.append(Issue(json_path(parts + [key]), f"unknown concept key '{value}': not in the terminology tables "
                                        "(give text only, or add a verified row to mappings/terminology)", "code-invalid"))
                else:
                    walk(value, parts + [key])
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, parts + [i])

    walk(case, [])
    return issues

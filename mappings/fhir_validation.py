"""Structural validation of R4 JSON: fhirkit-rs decides, fhir.resources keeps the models.

Every write (transaction, batch, single REST write, bulk import chunk, case mapping) asks `resource_issues`
whether one resource is valid R4 JSON. The decision and its issues come from fhirkit-rs (R4 4.0.1, our wire
standard, in Rust; 3.5-5x faster per resource than fhir.resources here, bench/README.md section 3), and
fhir.resources stays for the models (`model_class`: `_elements`, searchsets, benchmarks' baseline).
fhirkit reads each resource as its orjson text when that text says exactly what the dict says (`json_text`): in
half the time it takes to read the dict; a rejection is read again from the dict, for Python's spelling of numbers
in its messages. The differential test proves both readings give the same issues on every resource it checks.

fhir.resources reads R4 JSON through its R4B models and validates in pydantic's lax mode, so the two differ.
tests/test_validation_differential.py runs both over every resource of the seed goldens, the vendored Synthea
slice, the treatment-line corpus and the benchmark generators (they agree on all of them) and over ~20,000
systematic mutations of those resources, and proves that `resource_issues` rejects exactly what either library
rejects. The classes it found:

fhirkit accepts, fhir.resources rejects (closed here, so nothing the write path refused before passes now):
- a resource id (at any depth: contained, Bundle.entry.resource) outside `[A-Za-z0-9\\-.]+`: fhirkit checks the
  pattern of `id`-typed elements (meta.versionId) but not Resource.id. Checked by the walk below with
  fhir.resources' pattern (no 64-character cap, which it lacks too; the store checks ids in URLs itself).
- primitive extensions the R4B models read differently: `"_gender": {}` or `{}` in `"_given": [...]` (ele-1:
  an object saying nothing) and `_valueCode` on an Extension (legal R4; the R4B Extension model lacks the field)
  are refused by the walk; a primitive given by its extension alone (`_x` without `x`), refused by fhir.resources
  where the element is a required choice, sends the resource to fhir.resources as well.
- a date, dateTime or instant matching the R4 regex but naming no calendar day (2021-02-29, 2020-04-31, year
  0000): fhirkit checks the regex only, and only fhir.resources knows which strings are dates, so a resource
  holding a string shaped like such a day is decided by fhir.resources as well (none in the corpora).
- an R4 type that R4B dropped (MedicinalProduct, EffectEvidenceSynthesis, ...) nested in a resource:
  fhir.resources has no model (it raised KeyError, a 500); refused at any depth, as at the top, where a type
  must be both R4 and modelled (`stored_type`).
- values fhirkit cannot take (NaN, infinity: Python's json reads them): fhir.resources decides.

fhirkit rejects, fhir.resources accepts (kept: each is invalid R4 JSON, json.html, so the stricter answer):
`"true"`, `1`, `"5"` or a number where a boolean, integer, decimal or date belongs (pydantic coerced them); `1.0`
for an integer; null or `{}`/`[]`/`""` where FHIR JSON forbids them (`"patient": null` even passed a required
element); `_x` arrays not lined up with `x`; uri/canonical/base64Binary values breaking their regex; R4B-only
resource types (Citation, SubscriptionTopic, ...: not R4) and unknown nested types.

Neither checks required value-set bindings (Patient.gender "woman", Observation.status "finalx"), reference
targets, invariants other than ele-1, or xhtml content. fhirkit's warnings are not reported (a write fails on
errors only; the corpora raise none). Messages are fhirkit's; paths are ours (`path` + the element path below the
resource); codes as before: structure, and required / code-invalid for a missing or unknown resourceType.
"""
from __future__ import annotations

from collections.abc import Iterable

import datetime as dt
import re
from functools import lru_cache
from typing import Any

import fhirkit
import orjson
import pydantic
from fhir.resources.R4B import get_fhir_model_class

from mappings.case_validation import json_path
from mappings.errors import Issue

R4_TYPES = frozenset(fhirkit.RESOURCE_TYPES)
# fhir.resources' Id pattern (Resource.id): what the write path accepted before fhirkit decided.
RESOURCE_ID = re.compile(r"[A-Za-z0-9\-.]+")
# The start of a date, dateTime or instant: year, then month and day when present, then the time or the end.
DATE_START = re.compile(r"(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?(?:T|$)")
# fhirkit reports this for a primitive array slot along with the slot's real problem (a wrong type, ""): noise.
NULL_SLOT = "null with no extension in its place"
DIGITS = frozenset("0123456789")
# In a resource's JSON text (orjson's: compact, digits and letters never escaped): a string starting like a date,
# ending where DATE_START lets it end (`$` also before a final newline, written `\n` in the text).
DATE_IN_TEXT = re.compile(r'"([0-9]\d{3})(?:-(\d{2})(?:-(\d{2}))?)?(?:T|"|\\n")')


@lru_cache(maxsize=None)
def model_class(resource_type: str):
    """The fhir.resources model for a resource type; ValueError for names that are not R4 resources."""
    cls = get_fhir_model_class(resource_type)
    if not hasattr(cls, "get_resource_type"):
        raise ValueError(f"{resource_type} is not a resource type")
    return cls


@lru_cache(maxsize=None)
def stored_type(resource_type: str) -> bool:
    """An R4 resource type that fhir.resources also models: the types this server accepts, at any depth."""
    if resource_type not in R4_TYPES:
        return False
    try:
        model_class(resource_type)
    except (ValueError, AttributeError, KeyError, ImportError):
        return False
    return True


def resource_issues(resource: object, path: str = "$", from_json: bool = False, text: bytes | None = None) -> list[Issue]:
    """Every structural problem of one resource, with JSON paths under `path`; empty when valid. from_json: the
    resource is what a JSON parser made (json.loads of a request body), so it holds JSON's types only. text: its
    json_text(resource, from_json), when the caller has it already."""
    if not isinstance(resource, dict):
        return [Issue(path, "a resource must be a JSON object", "structure")]
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str):
        return [Issue(f"{path}.resourceType", "resourceType is missing", "required")]
    if not stored_type(resource_type):
        return [Issue(f"{path}.resourceType", f"'{resource_type}' is not an R4 resource type" if resource_type not in R4_TYPES
                      else f"'{resource_type}' is an R4 resource type this server does not read (R4B dropped it)", "code-invalid")]
    if text is None:
        text = json_text(resource, from_json)
    try:
        found = _fhirkit_issues(resource, text)
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:  # NaN/infinity, values JSON cannot carry
        return fhir_resources_issues(resource, path) or [Issue(path, f"not FHIR JSON: {exc}", "structure")]
    issues = _translate(found, resource_type, path)
    if not _may_have_gaps(resource, text):
        return issues
    gaps, ask_fhir_resources = _gaps(resource, path)
    issues += gaps
    if not issues and ask_fhir_resources:
        return fhir_resources_issues(resource, path)
    return issues


def fhir_resources_issues(resource: dict, path: str = "$") -> list[Issue]:
    """fhir.resources' verdict on one resource of a type it models (the decision before fhirkit; the fallback)."""
    try:
        model_class(resource["resourceType"]).model_validate(resource)
    except pydantic.ValidationError as exc:
        return [Issue(path + json_path(list(err["loc"]))[1:], err["msg"], "structure") for err in exc.errors()]
    except (KeyError, ValueError, TypeError) as exc:  # fhir_core raises KeyError for a contained type it lacks
        return [Issue(path, f"not a valid resource: {exc!r}", "structure")]
    return []


def _translate(found: list[Any], resource_type: str, path: str) -> list[Issue]:
    """fhirkit's errors as Issues: "Patient.name[0].given[1]" under `path` becomes `path`.name[0].given[1]."""
    errors = [i for i in found if i.severity == "error"]
    if not errors:
        return []
    issues = []
    with_problem = {i.path for i in errors if i.message != NULL_SLOT}
    for issue in errors:
        if issue.message == NULL_SLOT and issue.path in with_problem:
            continue
        below = issue.path[len(resource_type):] if issue.path.startswith(resource_type) else f".{issue.path}"
        issues.append(Issue(path + below, issue.message, "structure"))
    return issues


def json_text(resource: dict, from_json: bool = False) -> bytes | None:
    """The resource as JSON text when the text says exactly what the dict says, else None: orjson refuses lone
    surrogates, integers beyond 64 bits, types JSON lacks and subclasses (the options), and writes NaN and
    infinity as null, a UUID or an Enum as a string; reading the text back equal to the dict rules those out.
    A dict a JSON parser made holds no UUID, Enum, tuple or subclass: of the rest only NaN and infinity are
    written as what they are not, as null, so a text without null needs no reading back (~2 us a resource)."""
    try:
        text = orjson.dumps(resource, option=orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATETIME
                            | orjson.OPT_PASSTHROUGH_DATACLASS)
    except TypeError:  # orjson.JSONEncodeError, also for nesting beyond its 255 levels
        return None
    if from_json and b"null" not in text:
        return text
    return text if orjson.loads(text) == resource else None


def _fhirkit_issues(resource: dict, text: bytes | None) -> list[Any]:
    """fhirkit's issues. From the JSON text when it is valid: fhirkit reads text in half the time it takes to read
    the dict (bench/ingest.py), and the differential test shows both readings agree on every corpus resource and
    mutation. Otherwise from the dict, as before: its messages spell numbers as Python does (1e-07 where the text
    has 1e-7), and its exceptions (NaN, infinity, values JSON cannot carry) are the caller's to handle."""
    if text is not None:
        try:
            found = fhirkit.validate(text)
        except ValueError:  # fhirkit.ParseError: never seen on orjson's text; should it come, the dict decides
            pass
        else:
            if all(i.severity != "error" for i in found):
                return found
    return fhirkit.validate(resource)


def _may_have_gaps(resource: dict, text: bytes | None = None) -> bool:
    """The quick walk of every resource: could `_gaps` find anything? (A nested or root resource, a primitive
    extension or a date-shaped string with a day no calendar has.) Nearly always no, and then no path is made.
    With the resource's JSON text, `_text_may_have_gaps` answers first: its no is always the walk's no."""
    rid = resource.get("id")
    if isinstance(rid, str) and not RESOURCE_ID.fullmatch(rid):
        return True
    if text is not None and not _text_may_have_gaps(text):
        return False
    stack: list[object] = [resource]
    while stack:
        node = stack.pop()
        if type(node) is dict:
            if node is not resource and "resourceType" in node:
                return True
            if any(key[:1] == "_" for key in node):
                return True
            values: Iterable[Any] = node.values()
        elif type(node) is list:
            values = node
        else:
            continue
        for value in values:  # an object's values and an array's items are walked alike
            kind = type(value)
            if kind is str:
                if value[:1] in DIGITS and _no_such_day(value):
                    return True
            elif kind is dict or kind is list:
                stack.append(value)
    return False


def _text_may_have_gaps(text: bytes) -> bool:
    """The walk's question asked of the JSON text by C-speed searches (under half the walk's time): False only when
    the walk would find nothing. A nested resource writes a second `"resourceType"`, a primitive extension a key
    starting `"_`, and every string the walk checks (starting with an ASCII digit) appears after its opening quote
    as written (orjson escapes no digit), so DATE_IN_TEXT finds it if DATE_START matches it. A match may also be a
    key or begin at an escaped quote: then the walk decides."""
    if text.count(b'"resourceType"') > 1 or b'"_' in text:
        return True
    for year, month, day in DATE_IN_TEXT.findall(text.decode()):  # "" for a group that did not take part
        if _impossible_day(year, month or None, day or None):
            return True
    return False


def _gaps(resource: dict, path: str) -> tuple[list[Issue], bool]:
    """What fhirkit accepts and fhir.resources rejects: (issues found here, whether fhir.resources must decide too:
    for a string that looks like a date naming no calendar day, since only it knows which elements are dates, and
    for a primitive given by its extension alone, `_x` without `x`, which it refuses where the element is a
    required choice). One walk; a node's path is kept as a linked trail and spelled only for what is found."""
    issues: list[Issue] = []
    ask = False
    stack: list[tuple[object, tuple, object]] = [(resource, (), None)]  # (node, trail, key of the list holding it)
    while stack:
        node, trail, held_in = stack.pop()
        if isinstance(node, dict):
            if "resourceType" in node:
                issues += _nested_resource(node, trail, path)
            for key, value in node.items():
                if isinstance(value, str):
                    ask = ask or _no_such_day(value)
                elif isinstance(value, (dict, list)):
                    stack.append((value, (trail, key), None if isinstance(value, dict) else key))
                if key[:1] == "_":
                    ask = ask or key[1:] not in node
                    issues += _primitive_extension(key, value, (trail, key), path, held_in)
        elif isinstance(node, list):
            for i, value in enumerate(node):
                if isinstance(value, str):
                    ask = ask or _no_such_day(value)
                elif isinstance(value, (dict, list)):
                    stack.append((value, (trail, i), held_in))
    return issues, ask


def _nested_resource(node: dict, trail: tuple, path: str) -> list[Issue]:
    """A resource (the root, contained, in Bundle.entry): an id of fhir.resources' pattern, a type it models."""
    issues = []
    nested_type = node["resourceType"]
    if trail and isinstance(nested_type, str) and nested_type in R4_TYPES and not stored_type(nested_type):
        issues.append(Issue(_spell(path, (trail, "resourceType")),
                            f"'{nested_type}' is an R4 resource type this server does not read (R4B dropped it)", "code-invalid"))
    rid = node.get("id")
    if isinstance(rid, str) and not RESOURCE_ID.fullmatch(rid):
        issues.append(Issue(_spell(path, (trail, "id")), f"{rid!r} is not a valid id (letters, digits, '-' and '.')", "structure"))
    return issues


def _primitive_extension(key: str, value: object, trail: tuple, path: str, held_in: object) -> list[Issue]:
    """`_x` as fhir.resources' R4B models take it: not empty (ele-1: `{}` says nothing), and not on the value of
    an Extension (R4 allows `_valueCode` there; the R4B Extension model has no such field, so it was refused)."""
    if held_in in ("extension", "modifierExtension") and key.startswith("_value"):
        return [Issue(_spell(path, trail), "an extension's value cannot carry extensions of its own here", "structure")]
    message = "an empty object is not allowed; leave the element out"
    if value == {}:
        return [Issue(_spell(path, trail), message, "structure")]
    if isinstance(value, list):
        return [Issue(_spell(path, (trail, i)), message, "structure") for i, v in enumerate(value) if v == {}]
    return []


def _spell(path: str, trail: tuple) -> str:
    keys: list[str | int] = []
    while trail:
        trail, key = trail
        keys.append(key)
    return path + "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in reversed(keys))


def _no_such_day(value: str) -> bool:
    """A string shaped like a date whose year is 0000 or whose day is not in its month (2021-02-29)."""
    if not value[:1].isdigit():
        return False
    match = DATE_START.match(value)
    return match is not None and _impossible_day(*match.groups())


def _impossible_day(year: str, month: str | None, day: str | None) -> bool:
    """Year 0000, or a day not in its month, of a string matching DATE_START."""
    if year == "0000":
        return True
    if day is None or month is None:  # DATE_START gives a day only with its month
        return False
    try:
        dt.date(int(year), int(month), int(day))
    except ValueError:
        return True
    return False

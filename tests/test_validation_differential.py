"""fhirkit-rs against fhir.resources, resource by resource: they agree on every resource of the corpora (the
vendored Synthea slice, the seed goldens, the treatment-line corpus, the benchmark generators), and on
systematic mutations of those resources `resource_issues` (fhirkit's decision plus the checks that close its
gaps) rejects exactly what either library rejects: never looser than fhir.resources was, and no rejection of
its own. Every raw disagreement between the two libraries must belong to a class that
mappings/fhir_validation.py documents; any other is reported with its mutation and its paths.

`DIFFERENTIAL_ALL=1` mutates every resource of the corpora instead of the largest one of each type per corpus.
"""
from __future__ import annotations

import copy
import json
import os
import random
import re
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import fhirkit
import pydantic
import pytest
from case_files import DATA, SEED_CASES, load_case
from corpus_builders import histories, to_fhir

from bench import cohort as bench_cohort
from bench import ingest as bench_ingest
from mappings.case_bundle import case_to_bundle
from mappings import fhir_validation
from mappings.fhir_validation import model_class, resource_issues
from store import bundle_plan
from treatment_lines.engine import summarise
from treatment_lines.fhir_output import lines_to_fhir

SYNTHEA_SLICE = DATA / "bulk" / "synthea-4-patients"


# -- the corpora ------------------------------------------------------------------------------------------------
@lru_cache(maxsize=None)
def corpora() -> dict[str, tuple[dict, ...]]:
    seed_bundles = [json.loads((DATA / name / "expected-bundle.json").read_text(encoding="utf-8")) for name in SEED_CASES]
    seed = [e["resource"] for b in seed_bundles for e in b["entry"]] + seed_bundles
    seed += [r for name in SEED_CASES for r in lines_to_fhir(summarise([e["resource"] for e in case_to_bundle(load_case(name))["entry"]]),
                                                                     "Patient/seed")]
    lines: list[dict] = []
    for history in histories().values():
        resources = to_fhir(history)
        lines += resources + lines_to_fhir(summarise(resources), "Patient/corpus")
    rng = random.Random(11)
    synthea_shaped = [json.loads(bench_ingest.synthea_bundle(rng, visits=6)) for _ in range(3)]
    cohort = [case_to_bundle(case) for case in bench_cohort.cohort(12, seed=5)]
    return {
        "synthea-slice": tuple(json.loads(line) for path in sorted(SYNTHEA_SLICE.glob("*.ndjson"))
                               for line in path.read_text(encoding="utf-8").splitlines() if line.strip()),
        "seed-goldens": tuple(seed),
        "treatment-line-corpus": tuple(lines),
        "bench-synthea-shaped": tuple([e["resource"] for b in synthea_shaped for e in b["entry"]] + synthea_shaped),
        "bench-cohort-mapped": tuple([e["resource"] for b in cohort for e in b["entry"]] + cohort),
    }


# -- the verdicts -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Verdicts:
    before: list[str]   # fhir.resources, as the write path used it before fhirkit ("path: message")
    fhirkit: list[str]  # fhirkit's errors, raw
    ours: list[str]     # resource_issues now

    def disagree(self) -> bool:
        return bool(self.before) != bool(self.fhirkit)


def _before(resource: object) -> list[str]:
    """The previous `resource_issues`: the resource type's R4B model, then model_validate; a crash is a rejection."""
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        return ["$: not a resource"]
    try:
        cls = model_class(resource["resourceType"])
    except (ValueError, AttributeError, KeyError):
        return ["$.resourceType: not an R4B resource type"]
    try:
        cls.model_validate(resource)
    except pydantic.ValidationError as exc:
        return [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
    except Exception as exc:  # fhir_core raised KeyError on a contained type it lacks: a 500 before
        return [f"$: crash {exc!r}"]
    return []


def _fhirkit(resource: object) -> list[str]:
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        return ["$: not a resource"]
    try:
        return [f"{i.path}: {i.message}" for i in fhirkit.validate(resource) if i.severity == "error"]
    except Exception as exc:
        return [f"$: exception {exc!r}"]


def verdicts(resource: object) -> Verdicts:
    return Verdicts(_before(resource), _fhirkit(resource), [f"{i.path}: {i.message}" for i in resource_issues(resource)])


# The documented disagreement classes (mappings/fhir_validation.py). fhirkit stricter: every fhirkit error of
# the mutation matches one of these; fhirkit looser: some fhir.resources error matches one of these.
FHIRKIT_STRICTER = {
    "lax coercion (a string, number or boolean of the wrong JSON type)":
        r"expected (true or false|a whole number|a number|a string), found (a|an) (string|number|boolean)",
    "a decimal written for an integer": r"is not a FHIR integer$",
    "null or empty where FHIR JSON forbids it": r"null is not allowed|an empty \w+ is not allowed|found null$|null with no extension",
    "_x array not lined up with x": r"the two arrays must line up",
    "uri, canonical or base64Binary breaking its regex": r"is not a valid (uri|url|canonical|base64Binary)$",
    "not an R4 resource type (R4B-only, unknown, nested)": r"is not a FHIR R4 resource type|resource needs a resourceType",
}
FHIRKIT_LOOSER = {
    "Resource.id pattern": r"(^|\.)id: String should match pattern",
    "primitive extensions (_x) R4B reads differently": r"_\w+: Extra inputs are not permitted|Expect any of field value from this list|"
                                                        r"One of field value is required",
    "no such calendar day": r"(day|month) value is outside|year 0 is out of range|Date(Time)? value string does not match spec regex",
    "type without an R4B model (crash)": r"crash KeyError",
}


def disagreement_class(v: Verdicts) -> str | None:
    """The documented class of a raw disagreement, None when it fits none."""
    if v.fhirkit and not v.before:
        classes = {name for issue in v.fhirkit for name, pattern in FHIRKIT_STRICTER.items() if re.search(pattern, issue)}
        # "required element missing" comes with a null or empty value where the element was: explained by that one.
        reasons = [i for i in v.fhirkit if not i.endswith(": required element missing")]
        explained = bool(reasons) and all(any(re.search(p, issue) for p in FHIRKIT_STRICTER.values()) for issue in reasons) \
            and {i.split(": ")[0] for i in v.fhirkit} == {i.split(": ")[0] for i in reasons}
        return "fhirkit stricter: " + ", ".join(sorted(classes)) if explained else None
    for name, pattern in FHIRKIT_LOOSER.items():
        if any(re.search(pattern, issue) for issue in v.before):
            return f"fhirkit looser: {name}"
    return None


# -- the mutations ----------------------------------------------------------------------------------------------
Path = tuple  # keys and indices from the resource's root


def _paths(node: object, prefix: Path = ()) -> Iterator[tuple[Path, object]]:
    yield prefix, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, prefix + (i,))


def _at(document: object, path: Path) -> object:
    for part in path:
        document = document[part]  # type: ignore[index]
    return document


def _spell(path: Path) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path) or "(root)"


def _set(resource: dict, path: Path, value: object) -> dict:
    mutated = copy.deepcopy(resource)
    _at(mutated, path[:-1])[path[-1]] = value  # type: ignore[index]
    return mutated


def _delete(resource: dict, path: Path) -> dict:
    mutated = copy.deepcopy(resource)
    del _at(mutated, path[:-1])[path[-1]]  # type: ignore[attr-defined]
    return mutated


def _merge(resource: dict, path: Path, extra: dict) -> dict:
    mutated = copy.deepcopy(resource)
    _at(mutated, path).update(copy.deepcopy(extra))  # type: ignore[attr-defined]
    return mutated


WRONG_TYPES = {str: (7, True, ["text"], {"text": "x"}), bool: ("true", 1), int: ("5", True, 1.5, 2.0), float: ("5.5", True),
               dict: ("text", 3), list: ("text", {"a": 1})}
BAD_DATES = ("2021-02-29", "2020-04-31", "0000-01-01", "2020-13-01", "2020-00", "2020-1-1", "20200101",
             "2020-01-01T10:00:00", "2020-01-01T10:00", "2020-01-01T25:00:00Z", "2020-01-01T10:00:00+15:00",
             "1900-02-29T00:00:00Z", "2019-02-29T10:00:00+01:00", " 2020-01-01", "2020-01-01Z")
DATE_LIKE = re.compile(r"\d{4}(-\d{2}(-\d{2})?)?(T.*)?$")
BAD_IDS = ("bad id!", "a_b", "", "x" * 65, "é", 7)
CODE_KEYS = {"status", "intent", "gender", "use", "priority", "mode", "type", "category", "criticality", "comparator"}
CHOICE = re.compile(r"^(value|effective|onset|abatement|deceased|multipleBirth|medication|performed|occurrence|asNeeded|"
                    r"reported|timing|born|age|serviced|product|collected|answer|dose|rate)([A-Z]\w*)$")
PRIMITIVE_EXTENSIONS = ({}, {"id": "p1"}, {"extension": [{"url": "http://example.org/x", "valueString": "v"}]}, [], "x", None,
                        {"extension": []}, {"extension": [{"valueString": "v"}]}, {"bogus": 1}, {"extension": [{}]})
NESTED = ({"resourceType": "Conditio", "id": "c1"}, {"resourceType": "MedicinalProduct", "id": "m1", "name": [{"productName": "x"}]},
          {"resourceType": "Citation", "id": "c2", "status": "active"}, {"id": "no-type"},
          {"resourceType": "Patient", "id": "p1", "contained": [{"resourceType": "Patient", "id": "p2"}]},
          {"resourceType": "Patient", "id": "bad id!"}, {"resourceType": "Patient", "id": "p3", "bogus": 1},
          {"resourceType": "Patient", "id": "p4", "birthDate": "2021-02-29"}, {"resourceType": "Patient", "id": "p5", "_gender": {}},
          {"resourceType": "Patient", "id": "p6", "active": "true"})


def _deep_extension(depth: int, leaf: dict) -> dict:
    node = {"url": "http://example.org/deep", **leaf}
    for _ in range(depth):
        node = {"url": "http://example.org/deep", "extension": [node]}
    return node


def _deep_assigner(depth: int, leaf: object) -> dict:
    node: dict = {"system": "urn:x", "value": leaf}
    for _ in range(depth):
        node = {"system": "urn:x", "value": "v", "assigner": {"identifier": node}}
    return node


def mutations(resource: dict) -> Iterator[tuple[str, str, dict]]:
    """(class, where and what, mutated resource): every class at every place it applies. A place whose path differs
    from one already mutated only by its array indices (the 2nd coding of the 5th identifier) is skipped."""
    seen = set()
    rotation = 0
    for path, value in list(_paths(resource)):
        shape = tuple("[]" if isinstance(p, int) else p for p in path)
        if shape in seen:
            continue
        seen.add(shape)
        key = path[-1] if path else None
        if path:
            for wrong in WRONG_TYPES.get(type(value), ()):
                yield "wrong JSON type", f"{_spell(path)} = {wrong!r}", _set(resource, path, wrong)
            yield "JSON null", f"{_spell(path)} = null", _set(resource, path, None)
            for empty in ([], {}, ""):
                yield "empty array/object/string", f"{_spell(path)} = {empty!r}", _set(resource, path, empty)
        if isinstance(key, str):
            yield "missing element", f"without {_spell(path)}", _delete(resource, path)
        if isinstance(value, str) and isinstance(key, str) and DATE_LIKE.match(value):
            for bad in BAD_DATES:
                yield "invalid date/dateTime/instant", f"{_spell(path)} = {bad!r}", _set(resource, path, bad)
        if isinstance(value, str) and key in CODE_KEYS:
            for bad in ("not-a-code", " padded", "two  spaces"):
                yield "invalid code", f"{_spell(path)} = {bad!r}", _set(resource, path, bad)
        if isinstance(key, str) and (match := CHOICE.match(key)):
            other = {"Boolean": True} if match.group(2) != "Boolean" else {"String": "x"}
            for suffix, second in other.items():
                yield "two choice[x] variants", f"{_spell(path)} and {match.group(1)}{suffix}", \
                    _merge(resource, path[:-1], {f"{match.group(1)}{suffix}": second})
        if isinstance(value, (str, bool, int, float)) and isinstance(key, str) and not key.startswith("_") and key != "resourceType":
            rotation += 1  # four of the shapes at each primitive, in turn: every shape meets every kind of primitive
            for shape in (PRIMITIVE_EXTENSIONS * 2)[rotation % len(PRIMITIVE_EXTENSIONS):][:4]:
                yield "primitive extension _x", f"{_spell(path[:-1])}._{key} = {shape!r}", _merge(resource, path[:-1], {f"_{key}": shape})
            yield "primitive extension _x", f"{_spell(path)} replaced by _{key}", \
                _merge(_delete(resource, path), path[:-1], {f"_{key}": PRIMITIVE_EXTENSIONS[2]})
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value) and isinstance(key, str):
            n = len(value)
            for shape in ([None] * n, [{}] * n, [{"id": "a"}] * n, [{"id": "a"}] * (n + 1), [{"id": "a"}], {"id": "a"},
                          [None, {"id": "a"}][:n] + [None] * max(0, n - 2)):
                yield "primitive extension _x", f"{_spell(path[:-1])}._{key} = {shape!r}", _merge(resource, path[:-1], {f"_{key}": shape})
            yield "JSON null", f"{_spell(path)} + [null]", _set(resource, path, value + [None])
        if isinstance(value, dict):
            yield "unknown element", f"{_spell(path)}.bogusElement", _merge(resource, path, {"bogusElement": "x"})
            yield "unknown element", f"{_spell(path)}._bogusElement", _merge(resource, path, {"_bogusElement": {"id": "a"}})
            if "extension" not in value and "resourceType" not in value or not path:
                yield "extension without url", f"{_spell(path)}.extension[0]", _merge(resource, path, {"extension": [{"valueString": "x"}]})
                yield "extension without url", f"{_spell(path)}.modifierExtension[0]", \
                    _merge(resource, path, {"modifierExtension": [{"valueCode": "x"}]})
            if "resourceType" in value:
                for bad in BAD_IDS:
                    yield "bad id", f"{_spell(path)}.id = {bad!r}", _merge(resource, path, {"id": bad})
                yield "bad id", f"{_spell(path)}.meta.versionId = 'bad id!'", _merge(resource, path, {"meta": {"versionId": "bad id!"}})
        if key == "extension" and isinstance(value, list):
            for i, extension in enumerate(value):
                if isinstance(extension, dict) and "url" in extension:
                    yield "extension without url", f"{_spell(path)}[{i}] without url", _delete(resource, path + (i, "url"))
    for nested in NESTED:
        yield "contained resources", f"contained = [{nested!r}]", {**copy.deepcopy(resource), "contained": [nested]}
    for shape in ([], {}, [None], ["x"]):
        yield "contained resources", f"contained = {shape!r}", {**copy.deepcopy(resource), "contained": shape}
    for depth in (30, 60):
        for leaf in ({"valueString": "ok"}, {"valueInteger": "x"}, {"valueDate": "2021-02-29"}, {}):
            yield "nested deep structures", f"extension {depth} deep, leaf {leaf!r}", \
                {**copy.deepcopy(resource), "extension": [_deep_extension(depth, leaf)]}
    for depth, leaf in ((20, "ok"), (20, 5), (40, None)):
        if resource.get("resourceType") in ("Patient", "Condition", "Observation", "Procedure", "Encounter"):
            yield "nested deep structures", f"identifier.assigner chain {depth} deep, leaf {leaf!r}", \
                {**copy.deepcopy(resource), "identifier": [_deep_assigner(depth, leaf)]}


def _size(resource: dict) -> int:
    return sum(1 for _ in _paths(resource))


def mutated_resources() -> list[tuple[str, dict]]:
    """(corpus, resource) to mutate: all of them with DIFFERENTIAL_ALL=1, else the largest of each type per corpus
    (Bundles aside: their entries are mutated one by one)."""
    chosen = []
    for name, resources in corpora().items():
        plain = [r for r in resources if r["resourceType"] != "Bundle"]
        if os.environ.get("DIFFERENTIAL_ALL"):
            chosen += [(name, r) for r in plain]
            continue
        largest: dict[str, dict] = {}
        for r in plain:
            if _size(r) > _size(largest.get(r["resourceType"], {})):
                largest[r["resourceType"]] = r
        chosen += [(name, r) for _, r in sorted(largest.items())]
    return chosen


# -- the tests --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("corpus", ["synthea-slice", "seed-goldens", "treatment-line-corpus", "bench-synthea-shaped",
                                    "bench-cohort-mapped"])
def test_both_validators_accept_every_resource_of_the_corpus(corpus):
    resources = corpora()[corpus]
    assert len(resources) >= 20
    failed = []
    for n, resource in enumerate(resources):
        v = verdicts(resource)
        if v.before or v.fhirkit or v.ours:
            failed.append(f"{corpus}[{n}] {resource['resourceType']}/{resource.get('id')}: "
                          f"fhir.resources {v.before[:3]}, fhirkit {v.fhirkit[:3]}, resource_issues {v.ours[:3]}")
    assert failed == [], "\n".join(failed)


def test_the_corpora_cover_the_resource_types_the_gateway_takes_in():
    types = {r["resourceType"] for resources in corpora().values() for r in resources}
    assert {"Patient", "Condition", "Observation", "Procedure", "MedicationRequest", "MedicationStatement",
            "MedicationAdministration", "Encounter", "Provenance", "EpisodeOfCare", "Bundle", "Immunization",
            "DocumentReference", "AllergyIntolerance", "Device", "Practitioner", "Organization"} <= types


@lru_cache(maxsize=None)
def mutation_results() -> tuple[tuple[str, str, str, str, Verdicts], ...]:
    """(corpus, class, where, resource type/id, verdicts) of every mutation."""
    results = []
    for corpus, resource in mutated_resources():
        label = f"{resource['resourceType']}/{resource.get('id')}"
        for kind, where, mutated in mutations(resource):
            results.append((corpus, kind, where, label, verdicts(mutated)))
    return tuple(results)


def _report(rows: list[tuple[str, str, str, str, Verdicts]]) -> str:
    return "\n".join(f"{corpus} {label} [{kind}] {where}:\n    fhir.resources {v.before[:2]}\n    fhirkit {v.fhirkit[:2]}\n"
                     f"    resource_issues {v.ours[:2]}" for corpus, kind, where, label, v in rows[:40]) + \
        (f"\n... and {len(rows) - 40} more" if len(rows) > 40 else "")


def test_resource_issues_rejects_exactly_what_either_validator_rejects_on_every_mutation():
    """Never looser than fhir.resources (the write path's verdict before), never a rejection neither library makes."""
    results = mutation_results()
    looser = [r for r in results if r[4].before and not r[4].ours]
    invented = [r for r in results if r[4].ours and not (r[4].before or r[4].fhirkit)]
    stricter_than_fhirkit_alone = [r for r in results if r[4].ours and not r[4].fhirkit]
    assert looser == [], "accepted now, rejected by fhir.resources before:\n" + _report(looser)
    assert invented == [], "rejected by resource_issues alone:\n" + _report(invented)
    # The gap checks do fire: without them these mutations would pass (the test could fail, and would have).
    assert stricter_than_fhirkit_alone, "no mutation needed the checks that close fhirkit's gaps"


def test_every_disagreement_between_the_libraries_is_a_documented_class():
    results = mutation_results()
    disagreements = [r for r in results if r[4].disagree()]
    unexplained = [r for r in disagreements if disagreement_class(r[4]) is None]
    assert unexplained == [], "disagreements outside the documented classes:\n" + _report(unexplained)
    found = Counter(disagreement_class(r[4]) for r in disagreements)
    # Each documented looser class is met by the mutations, so each gap check is exercised.
    assert {f"fhirkit looser: {name}" for name in FHIRKIT_LOOSER} <= set(found), found


def test_every_mutation_class_is_applied_and_both_libraries_reject_some_of_its_mutations():
    results = mutation_results()
    applied = Counter(kind for _, kind, _, _, _ in results)
    rejected_by_both = Counter(kind for _, kind, _, _, v in results if v.before and v.fhirkit)
    classes = {"wrong JSON type", "JSON null", "empty array/object/string", "missing element", "invalid date/dateTime/instant",
               "invalid code", "two choice[x] variants", "primitive extension _x", "unknown element", "extension without url",
               "bad id", "contained resources", "nested deep structures"}
    assert set(applied) == classes
    assert set(rejected_by_both) == classes, rejected_by_both


def test_paths_are_the_json_paths_below_the_given_prefix():
    patient = {"resourceType": "Patient", "name": [{"given": ["Ann", 7]}], "birthDate": "1961-13-45", "id": "bad id!"}
    issues = resource_issues(patient, "Bundle.entry[3].resource")
    assert {(i.path, i.code) for i in issues} == {("Bundle.entry[3].resource.name[0].given[1]", "structure"),
                                                 ("Bundle.entry[3].resource.birthDate", "structure"),
                                                 ("Bundle.entry[3].resource.id", "structure")}
    assert resource_issues({"resourceType": "Conditio"}, "Patient")[0].path == "Patient.resourceType"
    assert resource_issues({"resourceType": "Citation", "status": "active"})[0].code == "code-invalid"
    assert resource_issues({"name": []})[0].code == "required"


def test_values_fhirkit_cannot_take_are_decided_by_fhir_resources():
    """Python's json reads NaN; fhirkit refuses such a value outright, fhir.resources names its path."""
    observation = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "valueQuantity": {"value": float("nan")}}
    assert [i.path for i in resource_issues(observation, "Observation")] == ["Observation.valueQuantity.value"]


# -- reading the JSON text instead of the dict ----------------------------------------------------------------------
def _from_the_dict(resource: object) -> list[tuple[str, str, str]]:
    """resource_issues as it was before it handed fhirkit the JSON text: the dict, and the walk alone for the gaps."""
    text_of = fhir_validation.json_text
    fhir_validation.json_text = lambda _resource, _from_json=False: None
    try:
        return [(i.path, i.message, i.code) for i in resource_issues(resource, "R")]
    finally:
        fhir_validation.json_text = text_of


def _corpus_and_mutations() -> Iterator[tuple[str, dict]]:
    for name, resources in corpora().items():
        for n, resource in enumerate(resources):
            yield f"{name}[{n}]", resource
    for corpus, resource in mutated_resources():
        for kind, where, mutated in mutations(resource):
            yield f"{corpus} {resource['resourceType']} [{kind}] {where}", mutated


def test_reading_the_json_text_changes_no_issue_on_any_corpus_resource_or_mutation():
    """resource_issues gives fhirkit the resource's JSON text (it reads it in half the time) and asks the text first
    whether the gap walk could find anything: the same issues, paths and messages as from the dict alone, and the
    text's no is never wrong where the walk says yes."""
    differ, text_said_no_wrongly, parsed_differ = [], [], []
    read_as_text = walk_said_yes = text_said_no = read_as_parsed = 0
    for label, resource in _corpus_and_mutations():
        text = fhir_validation.json_text(resource)
        if text is None:
            continue
        read_as_text += 1
        ours = [(i.path, i.message, i.code) for i in resource_issues(resource, "R")]
        from_dict = _from_the_dict(resource)
        if ours != from_dict:
            differ.append(label)
        # A request body's resource (from_json: JSON's types only, so no reading back of a text without null).
        try:
            parsed = json.loads(json.dumps(resource))
        except (TypeError, ValueError):  # a value JSON cannot carry (a UUID): no request body holds one
            continue
        read_as_parsed += 1
        expected = from_dict if parsed == resource else _from_the_dict(parsed)  # NaN is not NaN: asked again
        if [(i.path, i.message, i.code) for i in resource_issues(parsed, "R", from_json=True)] != expected:
            parsed_differ.append(label)
        walk = fhir_validation._may_have_gaps(resource)
        walk_said_yes += walk
        text_said_no += not fhir_validation._text_may_have_gaps(text)
        if fhir_validation._may_have_gaps(resource, text) != walk:
            text_said_no_wrongly.append(label)
    assert differ == [], differ[:20]
    assert parsed_differ == [], parsed_differ[:20]
    assert read_as_parsed > 15_000, read_as_parsed
    assert text_said_no_wrongly == [], text_said_no_wrongly[:20]
    # Not vacuous: most resources go through the text, and both answers of the walk are met.
    assert read_as_text > 15_000 and walk_said_yes > 1_000 and text_said_no > 1_000, (read_as_text, walk_said_yes, text_said_no)


OBSERVATION = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 1e-07, 1e16, 2**63, 2**64, -2**63 - 1, "\ud800", uuid.UUID(int=7),
                                   "2021-02-29\n", "\u0662\u0660\u0662\u0661-02-29", "2\u0660\u0662\u0661-02-29",
                                   "x\"2021-02-30", "0000", ("a",)],
                         ids=repr)
@pytest.mark.parametrize("element", ["valueInteger", "valueDecimal", "valueString", "valueDate"])
def test_values_the_json_text_cannot_say_exactly_get_the_issues_the_dict_gets(value, element):
    """NaN and infinity (orjson writes null), numbers spelled differently in a message (1e-07, 1e-7), integers beyond
    64 bits, lone surrogates, non-JSON types (orjson writes a UUID as a string), and date-like strings the text test
    must not miss (a final newline; Unicode digits after the first): the same issues as from the dict alone."""
    resource = {**OBSERVATION, "extension": [{"url": "http://example.org/x", element: value}]}
    assert [(i.path, i.message, i.code) for i in resource_issues(resource, "R")] == _from_the_dict(resource)
    keyed = {**OBSERVATION, "note": [{"text": "n", "_text": {"extension": [{"url": "http://example.org/x", element: value}]}}]}
    assert [(i.path, i.message, i.code) for i in resource_issues(keyed, "R")] == _from_the_dict(keyed)


def test_a_resource_nested_deeper_than_orjson_writes_has_no_json_text():
    """Then resource_issues takes the dict path whole (request bodies stop at 64 levels before this)."""
    deep: dict = {"url": "http://example.org/deep", "valueInteger": "x"}
    for _ in range(130):  # 2 levels each: beyond orjson's 255
        deep = {"url": "http://example.org/deep", "extension": [deep]}
    assert fhir_validation.json_text({**OBSERVATION, "extension": [deep]}) is None


def test_text_fhirkit_cannot_read_is_read_from_the_dict(monkeypatch):
    resource = {**OBSERVATION, "valueInteger": "7"}
    expected = _from_the_dict(resource)
    real = fhirkit.validate

    def text_refused(data):
        if isinstance(data, bytes):
            raise fhirkit.ParseError("refused")
        return real(data)

    monkeypatch.setattr(fhir_validation.fhirkit, "validate", text_refused)
    assert [(i.path, i.message, i.code) for i in resource_issues(resource, "R")] == expected != []


def test_the_text_test_says_yes_to_what_the_gap_walk_must_look_at():
    for resource in ({**OBSERVATION, "effectiveDateTime": "2021-02-29T10:00:00Z"}, {**OBSERVATION, "effectiveDateTime": "0000"},
                     {**OBSERVATION, "_status": {"id": "s"}}, {**OBSERVATION, "contained": [{"resourceType": "Patient"}]},
                     {**OBSERVATION, "note": [{"text": "2021-02-29\n"}]}):
        text = fhir_validation.json_text(resource)
        assert text is not None and fhir_validation._text_may_have_gaps(text), resource
    assert not fhir_validation._text_may_have_gaps(fhir_validation.json_text({**OBSERVATION, "effectiveDateTime": "2024-02-29"}))


def test_a_nan_where_an_array_may_hold_null_is_refused_from_a_parsed_body():
    """orjson writes NaN as null, which a primitive array may hold: a parsed body's text with null in it is read
    back, and the dict decides (from_json skips that only for a text without null)."""
    patient = json.loads('{"resourceType": "Patient", "name": [{"given": ["a", NaN], "_given": [null, {"id": "g"}]}]}')
    issues = [(i.path, i.message, i.code) for i in resource_issues(patient, "R", from_json=True)]
    assert issues == _from_the_dict(patient) and issues


def test_a_parsed_bodys_references_and_nulls_found_from_its_text_are_the_walks():
    """store.bundle_plan reads a parsed body's references from its JSON text when every one sits at the top level,
    and its nulls from the text's lack of them, instead of walking it: the same issues and references as the walk,
    on every corpus resource and mutation; both ways are taken."""
    differ, shortcut, walked = [], 0, 0
    for label, resource in _corpus_and_mutations():
        try:
            parsed = json.loads(json.dumps(resource))
        except (TypeError, ValueError):
            continue
        if not isinstance(parsed, dict) or parsed.get("resourceType") in (None, "Bundle"):
            continue
        entry = {"fullUrl": "urn:uuid:6e1f1c3a-8b0e-4e55-9b7a-1c2d3e4f5a6b", "resource": parsed,
                 "request": {"method": "POST", "url": str(parsed["resourceType"])}}
        fast, slow = bundle_plan._plan_entry(0, entry, "transaction", True), bundle_plan._plan_entry(0, entry, "transaction", False)
        if ([(i.path, i.message, i.code) for i in fast.issues], fast.refs) != ([(i.path, i.message, i.code) for i in slow.issues], slow.refs):
            differ.append(label)
        text = fhir_validation.json_text(parsed, True)
        if text is not None and bundle_plan._top_level_references(parsed, text, "p", []):
            shortcut += 1
        else:
            walked += 1
    assert differ == [], differ[:20]
    assert shortcut > 1_000 and walked > 1_000, (shortcut, walked)

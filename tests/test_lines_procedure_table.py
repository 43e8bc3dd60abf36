"""One procedure classification table (mappings/procedure_categories.csv) gives the registry category, the line
class and the mCODE surgical profile; the three readers agree because they read the same rows."""
from __future__ import annotations

from lines_builders import SCT, patient, procedure

from mappings.procedure_classes import procedure_classes
from registry.procedure_history import categorise
from treatment_lines.engine import summarise
from treatment_lines.rules import RuleBook, load_rules

RADIOPHARMACEUTICAL = "440252007"  # Administration of radiopharmaceutical (mCODE RadiotherapyModalityVS)


def test_every_line_class_of_the_table_is_a_class_of_the_rule_pack():
    classes = load_rules()["classes"]
    assert {row.line_class for row in procedure_classes().values() if row.line_class} <= set(classes)


def test_the_rule_pack_lists_no_procedure_codes_of_its_own():
    assert "procedures" not in load_rules()


def test_engine_and_registry_read_the_same_row_for_every_code():
    book = RuleBook(load_rules())
    for (system, code), row in procedure_classes().items():
        concept = {"coding": [{"system": system, "code": code}]}
        found = book.classify(concept)
        if row.line_class:
            assert (found.cls, found.how) == (row.line_class, "code"), code
        else:  # a row for the other columns only (1156383000: the engine reads SIRT from its text)
            assert found.how != "code", code
        assert categorise(concept) == ((row.category, "code") if row.category else ("other", "none")), code


def test_surgical_profile_rows_are_the_resections_read_as_surgery():
    rows = procedure_classes().values()
    assert {r.code for r in rows if r.surgical} == {r.code for r in rows if r.category == "resection"}
    assert all(r.line_class == "surgery" for r in rows if r.surgical)


def test_radiopharmaceutical_administration_is_a_radionuclide_line_by_its_code():
    """440252007 was in the registry table only: the engine read it from its text, or not at all without one."""
    summary = summarise([patient(), procedure("prrt-1", RADIOPHARMACEUTICAL, "2016-03-01"),
                         procedure("prrt-2", RADIOPHARMACEUTICAL, "2016-05-10")])
    assert [(line["name"], line["modality"]) for line in summary["lines"]] == [("radionuclide-therapy", "radionuclide")]
    assert not [f for f in summary["flags"] if f["code"] in ("classified-by-text", "unclassified-therapy")]
    assert categorise({"coding": [{"system": SCT, "code": RADIOPHARMACEUTICAL}]}) == ("radionuclide-therapy", "code")

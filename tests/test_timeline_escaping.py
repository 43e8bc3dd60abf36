"""Record text drawn in the timeline SVG (templates/timeline_chart.svg, autoescaped) stays text: markup in a
component, an outcome, a surgery or a marker name can neither add elements nor break out of an attribute."""
from __future__ import annotations

import xml.etree.ElementTree as ET

from service.timeline_svg import Chart, legend

SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = '<script>alert(1)</script><img src=x onerror="alert(2)">\'&amp;'
AGE = {"frame": "age", "low": 50, "high": 50, "precision": "year"}


def _hostile_summary() -> tuple[dict, list[dict]]:
    component = {"role": "line", "class": "chemotherapy", "resourceType": "MedicationStatement", "text": "Agent " + HOSTILE,
                 "dose": HOSTILE, "status": "completed"}
    line = {"number": 1, "modality": "systemic", "start": AGE, "end": {**AGE, "low": 51, "high": 51}, "ongoing": False,
            "components": [component], "duration": {"days": 365}, "endReason": {"code": "progression", "rule": HOSTILE},
            "outcomes": {"bestRadiologicalResponse": {"category": "stable-disease", "text": HOSTILE},
                         "syndromeControl": {"value": "complete", "text": HOSTILE}, "biomarkerResponse": None,
                         "complications": [{"text": HOSTILE, "resolved": False}]}, "timeToNextTreatment": {}}
    summary = {"lines": [line], "surgeries": [{"text": "Resection " + HOSTILE, "time": AGE, "intent": None}],
               "criticalEvents": [], "death": None, "flags": []}
    marker = {"name": "CgA " + HOSTILE, "fullName": HOSTILE, "value": "32 U/l", "interpretation": "high", "abnormal": True,
              "time": AGE, "note": HOSTILE}
    return summary, [marker]


def test_markup_in_record_text_is_drawn_as_text_never_as_elements():
    svg_text = Chart(*_hostile_summary()).svg()
    svg = ET.fromstring(svg_text)  # still well-formed XML
    tags = {element.tag.removeprefix(SVG) for element in svg.iter()}
    assert not tags & {"script", "img", "foreignObject"}, tags
    assert all(not name.startswith("on") for element in svg.iter() for name in element.attrib)
    # Each text sits, unchanged, in the element meant for it (escaped once: not as markup, not as "&lt;").
    component = next(t for t in svg.iter(f"{SVG}text") if t.get("data-kind") == "component")
    assert "".join(component.find(f"{SVG}tspan").itertext()).startswith("Agent <script>")
    assert component.find(f"{SVG}title").text == f"line therapy (chemotherapy): Agent {HOSTILE} {HOSTILE}; status completed"
    complication = next(t for t in svg.iter(f"{SVG}text") if t.get("data-outcome") == "complication")
    assert complication.find(f"{SVG}title").text == HOSTILE
    surgery = next(t for t in svg.iter(f"{SVG}text") if t.get("data-kind") == "surgery")
    assert surgery.text.startswith("Resection <script>alert</script><img")  # (parentheticals go to the title)


def test_the_legend_is_well_formed_with_one_item_per_symbol():
    items = [g for g in ET.fromstring(legend()).iter(f"{SVG}g") if g.get("data-kind") == "legend-item"]
    assert len(items) == 13 and all(len(list(g)) == 3 for g in items)  # title, shape, label

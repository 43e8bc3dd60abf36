"""The patient timeline page over the Flask test client: one lane per line, every event and marker labelled."""
from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

import pytest

from bundles import stored_patient_id
from case_files import load_case
from service.timeline_svg import Chart, time_label

SVG = "{http://www.w3.org/2000/svg}"


def _store(client, name: str) -> str:
    response = client.post("/cases?store=true", data=json.dumps(load_case(name)), content_type="application/json")
    assert response.status_code == 200
    return stored_patient_id(response.get_json())


def _chart(html: str) -> ET.Element:
    """The timeline SVG, parsed as XML: it must be well-formed on its own."""
    found = re.search(r'<svg [^>]*class="timeline".*?</svg>', html, re.S)
    assert found, "no timeline SVG in the page"
    return ET.fromstring(found.group(0))


def _texts(svg: ET.Element, kind: str) -> list[ET.Element]:
    return [t for t in svg.iter(f"{SVG}text") if t.get("data-kind") == kind]


def _visible(text: ET.Element) -> str:
    """The label as drawn: its own text and tspans, not its <title>."""
    parts = [text.text or ""]
    for child in text:
        parts += ["".join(child.itertext()) if child.tag == f"{SVG}tspan" else "", child.tail or ""]
    return " ".join(p.strip() for p in parts if p.strip())


@pytest.fixture
def pages(client):
    def get(name: str) -> tuple[str, dict, ET.Element]:
        pid = _store(client, name)
        response = client.get(f"/Patient/{pid}/timeline")
        assert response.status_code == 200 and response.mimetype == "text/html"
        assert "no-store" in response.headers["Cache-Control"]
        html = response.get_data(as_text=True)
        return html, client.get(f"/Patient/{pid}/treatment-lines").get_json(), _chart(html)
    return get


@pytest.mark.parametrize("name", ["case1-vipoma", "case2-insulinoma"])
def test_one_lane_per_line_and_every_event_is_marked_and_labelled(pages, name):
    html, summary, svg = pages(name)
    lanes = _texts(svg, "lane-label")
    assert [t.get("data-line") for t in lanes] == ["1", "2", "3", "4"] == [str(line["number"]) for line in summary["lines"]]
    for lane, line in zip(lanes, summary["lines"]):
        assert _visible(lane).startswith(f"Line {line['number']} · {line['modality']}")
    assert len(_texts(svg, "surgery")) == len(summary["surgeries"])
    assert len(_texts(svg, "critical-event")) == len(summary["criticalEvents"])
    assert len(_texts(svg, "death")) == (1 if summary["death"] else 0)
    groups = [g for g in svg.iter(f"{SVG}g") if (g.get("data-kind") or "").endswith("-marker")]
    assert len(groups) == len(summary["surgeries"]) + len(summary["criticalEvents"]) + bool(summary["death"]) + len(_texts(svg, "biomarker"))
    for element in groups + [r for r in svg.iter(f"{SVG}rect") if r.get("data-kind") in ("line-bar", "open-end")]:
        assert element.find(f"{SVG}title") is not None and element.find(f"{SVG}title").text, element.attrib
    for line in summary["lines"]:
        outcomes = [t for t in _texts(svg, "outcome") if t.get("data-line") == str(line["number"])]
        assert any(t.get("data-outcome") == "end-reason" for t in outcomes)
        bars = [r for r in svg.iter(f"{SVG}rect") if r.get("data-kind") == "line-bar" and r.get("data-line") == str(line["number"])]
        assert len(bars) == 1 and float(bars[0].get("width")) > 0
    assert "<script" not in html.lower() and not re.search(r'(src|href)\s*=\s*"https?:|@import|url\(\s*["\']?https?:', html)


def test_vipoma_page_shows_markers_outcomes_and_open_times(pages):
    html, summary, svg = pages("case1-vipoma")
    markers = [_visible(t) for t in _texts(svg, "biomarker")]
    assert any(m.startswith("Chromogranin A 32 U/l") and "before" in m for m in markers)
    assert any(m.startswith("Chromogranin A normal") and "age ≥ 52.5" in m for m in markers)
    assert any(m.startswith("5-HIAA 25 mg/24 h (high)") and "age 50" in m for m in markers)
    assert _visible(_texts(svg, "lane-label")[0]) == "Line 1 · combined TAE + 5-FU/Streptozotocin"
    line3 = {t.get("data-outcome"): _visible(t) for t in _texts(svg, "outcome") if t.get("data-line") == "3"}
    assert line3["biomarker-response"] == "Biomarkers: normalised · Chromogranin A for 2 years"
    assert line3["syndrome-control"] == "Symptom control: complete for 2 years"
    assert line3["radiological"] == "Best radiological response: stable disease"
    assert line3["end-reason"] == "Ended by: completed"  # SIRT done; the relapse 2 years later ends the interval after it
    times = {t.get("data-line"): _visible(t) for t in _texts(svg, "time")}
    assert times == {"1": "age ≥ 50 → ≥ 50.75", "2": "age ≥ 52.5 → ≥ 52.5", "3": "age ≥ 52.5 → ≥ 52.5", "4": "age ≥ 54.5 → ongoing"}
    assert [r.get("data-line") for r in svg.iter(f"{SVG}rect") if "ongoing" in (r.get("class") or "")] == ["4"]
    assert [_visible(t) for t in _texts(svg, "axis-title")] == ["Age (years)"]
    # The seed cases know ages only: no calendar date is drawn.
    assert not any(re.search(r"\b(19|20)\d\d-\d\d", "".join(t.itertext())) for t in svg.iter(f"{SVG}text"))


def test_insulinoma_page_shows_critical_events_death_and_flags(pages):
    html, summary, svg = pages("case2-insulinoma")
    events = [_visible(t) for t in _texts(svg, "critical-event")]
    names = [e.split(" · ")[0] for e in events]
    # The three thromboembolic events share one time: their order is the engine's tie-break on resource ids,
    # which depend on the identifier namespace (stored cases are scoped by source), not a clinical order.
    assert names[0] == "Admission to the intensive care unit"
    assert sorted(names[1:]) == sorted(["Severe pulmonary embolism", "Brain stroke", "Bilateral femoral thrombosis"])
    assert [_visible(t) for t in _texts(svg, "death")] == ["Death · age ≥ 77.37"]
    assert [_visible(t).split(" · ")[0] for t in _texts(svg, "surgery")] == [
        "Caudal pancreatectomy (curative)", "Resection of isolated liver metastasis, segment IVb",
        "Resection of isolated liver metastasis, segment III"]
    assert _texts(svg, "biomarker") == [] and _visible(_texts(svg, "none")[0]) == "No tumour-marker values recorded"
    line1 = {t.get("data-outcome"): _visible(t) for t in _texts(svg, "outcome") if t.get("data-line") == "1"}
    assert line1 == {"radiological": "Best radiological response: progressive disease", "end-reason": "Ended by: progression"}
    assert _visible([t for t in _texts(svg, "time") if t.get("data-line") == "1"][0]) == "age ≥ 74 → end not recorded"
    line4 = [_visible(t) for t in _texts(svg, "outcome") if t.get("data-line") == "4"]
    assert "Ended by: death" in line4 and "Best radiological response: complete response" in line4
    assert 'data-flag="end-unknown"' in html
    assert any(line.get("class") == "death-line" for line in svg.iter(f"{SVG}line"))


def test_unknown_patient_is_a_404_operation_outcome(client):
    response = client.get("/Patient/nobody/timeline")
    assert response.status_code == 404
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["code"] == "not-found"


def test_the_page_needs_credentials(app):
    assert app.test_client().get("/Patient/nobody/timeline").status_code == 401


@pytest.mark.parametrize("span, label", [
    ({"frame": "age", "low": 52.5, "high": None, "precision": "unknown"}, "age ≥ 52.5"),
    ({"frame": "age", "low": 50.0, "high": 51.01, "precision": "unknown"}, "age 50"),
    ({"frame": "age", "low": 50.25, "high": 51.5, "precision": "unknown"}, "age 50.25–51.5"),
    ({"frame": "date", "low": "2015-01-01", "high": "2015-12-31", "precision": "year"}, "2015"),
    ({"frame": "date", "low": "2015-06-01", "high": "2015-06-30", "precision": "month"}, "2015-06"),
    ({"frame": "date", "low": "2015-06-03", "high": "2015-06-03", "precision": "day"}, "2015-06-03"),
    ({"frame": "date", "low": None, "high": "2016-02-01", "precision": "unknown"}, "≤ 2016-02-01"),
    ({"frame": "relative", "low": 10.0, "high": None, "precision": "unknown"}, "day ≥ 10"),
    (None, "time not recorded"),
])
def test_times_are_labelled_at_their_precision(span, label):
    assert time_label(span) == label


def test_a_date_frame_summary_gets_a_calendar_axis_and_dates_at_their_precision():
    year = {"frame": "date", "low": "2015-01-01", "high": "2015-12-31", "precision": "year"}
    day = {"frame": "date", "low": "2017-03-02", "high": "2017-03-02", "precision": "day"}
    line = {"number": 1, "modality": "systemic", "start": year, "end": day, "ongoing": False, "components": [],
            "duration": {"days": None, "minDays": 400, "maxDays": 800, "reason": "bounds"}, "endReason": None,
            "outcomes": {"bestRadiologicalResponse": None, "syndromeControl": None, "biomarkerResponse": None,
                         "complications": []}, "timeToNextTreatment": {}}
    chart = Chart({"lines": [line], "surgeries": [], "criticalEvents": [], "death": None, "flags": []}, [])
    svg = ET.fromstring(chart.svg())
    assert chart.frame == "date" and [_visible(t) for t in _texts(svg, "axis-title")] == ["Calendar year"]
    assert [_visible(t) for t in _texts(svg, "time")] == ["2015 → 2017-03-02"]
    assert {_visible(t) for t in _texts(svg, "tick")} >= {"2015", "2016", "2017"}

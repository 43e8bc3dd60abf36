"""The timeline page in a real headless Chromium against a real gateway process: everything drawn, nothing
overlapping, printable. Screenshots (screen and print) and a PDF per seed case go to test-artifacts/."""
from __future__ import annotations

import json
import urllib.request
from bundles import stored_patient_id
from pathlib import Path

import pytest
import redis

from case_files import SEED_CASES, load_case
from gateway_setup import TEST_API_KEY
from live_gateway import live_gateway

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"


def _call(url: str, body: bytes | None = None) -> bytes:
    request = urllib.request.Request(url, data=body, headers={"X-API-Key": TEST_API_KEY, "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read()


@pytest.fixture(scope="module")
def gateway(redis_url):
    """`python -m service` on a free port, with both seed cases stored over HTTP: {case: (url, summary)}."""
    redis.Redis.from_url(redis_url).flushdb()
    ARTIFACTS.mkdir(exist_ok=True)
    with (ARTIFACTS / "timeline-gateway.log").open("wb") as log, live_gateway(redis_url, output=log) as base:
        try:
            pages = {}
            for name in SEED_CASES:
                bundle = json.loads(_call(f"{base}/cases?store=true", json.dumps(load_case(name)).encode()))
                pid = stored_patient_id(bundle)
                pages[name] = (f"{base}/Patient/{pid}/timeline", json.loads(_call(f"{base}/Patient/{pid}/treatment-lines")))
            yield pages
        finally:
            redis.Redis.from_url(redis_url).flushdb()


def _boxes(page, selector: str) -> list[dict]:
    return page.eval_on_selector_all(selector, """els => els.map(e => {
        const b = e.getBoundingClientRect();
        const t = e.querySelector(':scope > title');
        return {x: b.x, y: b.y, w: b.width, h: b.height, title: t ? t.textContent : null,
                kind: e.dataset.kind, line: e.dataset.line || null, text: e.textContent};
    })""")


def _inside(box: dict, frame: dict) -> bool:
    return (box["x"] >= frame["x"] - 0.5 and box["y"] >= frame["y"] - 0.5 and box["x"] + box["w"] <= frame["x"] + frame["w"] + 0.5
            and box["y"] + box["h"] <= frame["y"] + frame["h"] + 0.5)


def _overlap(a: dict, b: dict, slack: float = 1.0) -> bool:
    return (a["x"] + slack < b["x"] + b["w"] and b["x"] + slack < a["x"] + a["w"]
            and a["y"] + slack < b["y"] + b["h"] and b["y"] + slack < a["y"] + a["h"])


def _no_overlaps(boxes: list[dict]) -> None:
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not _overlap(a, b), f"labels overlap: {a['text']!r} and {b['text']!r}"


@pytest.mark.parametrize("name", SEED_CASES)
def test_the_timeline_renders_cleanly_in_chromium(gateway, browser, name):
    url, summary = gateway[name]
    context = browser.new_context(extra_http_headers={"X-API-Key": TEST_API_KEY}, viewport={"width": 1240, "height": 900})
    page = context.new_page()
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    response = page.goto(url)
    assert response.status == 200 and response.headers["content-type"].startswith("text/html")
    assert all(r.startswith(url.split("/Patient/")[0]) for r in requests), f"external requests: {requests}"

    frame = _boxes(page, "svg.timeline")[0]
    lanes = _boxes(page, "svg.timeline text[data-kind=lane-label]")
    assert [lane["line"] for lane in lanes] == [str(line["number"]) for line in summary["lines"]] and len(lanes) == 4
    bars = _boxes(page, "svg.timeline rect[data-kind=line-bar]")
    markers = _boxes(page, "svg.timeline g[data-kind$='-marker']")
    expected = len(summary["surgeries"]) + len(summary["criticalEvents"]) + (1 if summary["death"] else 0)
    assert len([m for m in markers if m["kind"] != "biomarker-marker"]) == expected
    labels = _boxes(page, "svg.timeline text[data-kind=surgery], svg.timeline text[data-kind=critical-event], "
                          "svg.timeline text[data-kind=death], svg.timeline text[data-kind=biomarker]")
    assert len(labels) == len(markers)
    for box in lanes + bars + markers + labels:
        assert box["w"] > 0 and box["h"] > 0, box
        assert _inside(box, frame), f"outside the SVG: {box}"
    assert all(m["title"] for m in markers + bars), "every marker and bar has a <title>"
    _no_overlaps(lanes)
    _no_overlaps(labels)
    _no_overlaps(_boxes(page, "svg.timeline text[data-kind=outcome]"))
    _no_overlaps(_boxes(page, "svg.timeline text[data-kind=component], svg.timeline text[data-kind=flag]") + lanes)

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"timeline-{name}.png"), full_page=True)
    page.emulate_media(media="print")
    page.screenshot(path=str(ARTIFACTS / f"timeline-{name}-print.png"), full_page=True)
    ink = page.eval_on_selector("svg.timeline text.outcome", "e => getComputedStyle(e).fill")
    assert ink == "rgb(0, 0, 0)", "print is black on white"
    pdf = page.pdf(path=str(ARTIFACTS / f"timeline-{name}.pdf"), landscape=True, print_background=True)
    assert pdf.startswith(b"%PDF") and len(pdf) > 5000
    context.close()

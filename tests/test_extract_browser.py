"""The review page in a real headless Chromium against a real gateway process: paste the seed report, see
every fact highlighted beside its evidence, reject one, create the case. The screenshot goes to test-artifacts/
(UPDATE_DOCS_SCREENSHOT=1 writes docs/extraction-review.png instead, the picture the docs show)."""
from __future__ import annotations

import os
from pathlib import Path

from gateway_setup import TEST_API_KEY
from live_gateway import live_gateway

ROOT = Path(__file__).resolve().parent.parent
REPORT = (ROOT / "tests" / "data" / "case1-vipoma" / "narrative.txt").read_text(encoding="utf-8")
SCREENSHOT = (ROOT / "docs" / "extraction-review.png" if os.environ.get("UPDATE_DOCS_SCREENSHOT") == "1"
              else ROOT / "test-artifacts" / "extraction-review.png")


def test_review_page_highlights_facts_and_creates_the_reviewed_case(redis_url, browser):
    with live_gateway(redis_url) as base:
        context = browser.new_context(extra_http_headers={"X-API-Key": TEST_API_KEY}, viewport={"width": 1400, "height": 900})
        page = context.new_page()
        external = []
        page.on("request", lambda r: external.append(r.url) if not r.url.startswith(base) else None)
        page.goto(f"{base}/cases/$extract/review")
        page.fill("#source", REPORT)
        page.click("#extract")
        page.wait_for_selector("#drafts button")
        assert page.locator("#drafts button").all_inner_texts() == ["Case 1", "Case 2"]
        marks = page.locator("#text mark")
        assert marks.count() > 40
        assert page.locator("#text mark.a-negated").count() >= 2  # "no extrahepatic metastases", "not observed"
        assert page.locator("#text mark.a-not-done").count() == 1  # the dismissed two-stage hepatectomy
        assert "the draft validates" in page.inner_text("#patient")
        facts = page.locator("#facts li")
        first_outcome = page.locator("#facts li", has_text="barely any decrease in size")
        first_outcome.locator("[data-action=reject]").click()
        assert "rejected" in (page.locator("#facts li", has_text="barely any decrease in size").get_attribute("class") or "")
        assert facts.count() > 25
        page.locator("#text mark", has_text="distal pancreatectomy").first.click()
        assert page.locator("#text mark.focus").count() >= 1
        page.screenshot(path=str(SCREENSHOT), full_page=False)
        page.click("#create")
        page.wait_for_selector("#created:not(:empty)", timeout=30000)  # (the page's CSP forbids eval'd predicates)
        assert page.inner_text("#created").startswith("case created"), page.inner_text("#created")
        assert external == []  # nothing from a CDN or anywhere else
        context.close()

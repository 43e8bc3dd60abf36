"""The swimmer plot as SVG: an events track, a tumour-marker track, one lane per line, an outcome column.

Positions are the summary's proven bounds on one time frame (age, date or relative days). A bound the record
leaves open ("after X", "≥ 50 a") is drawn as a fading hatch and labelled as such, never as an invented date.
Every meaningful element has a <title>; labels are <text> with data-line / data-kind attributes.
"""
from __future__ import annotations

import datetime as dt
import math
import re
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

WIDTH = 1180
LABEL_X, LABEL_W = 14, 292          # lane labels and components
X0, X1 = 330, 790                   # the time axis
OUT_X, OUT_W = 812, 356             # the outcome column
CHAR = 0.58                         # average glyph width per font-size unit (DejaVu/Liberation Sans)
ROW = 15
MODALITY_CLASS = {"systemic": "m-systemic", "liver-directed": "m-liver", "combined": "m-combined", "radionuclide": "m-radio"}
CLASS_SHORT = {"embolization": "TAE", "radioembolization": "SIRT", "ablation": "ablation", "chemoembolization": "TACE"}
RESPONSE = {"complete-response": "complete response", "partial-response": "partial response",
            "stable-disease": "stable disease", "progressive-disease": "progressive disease", "not-evaluable": "not evaluable"}
ABBREVIATION = re.compile(r"\(([0-9A-Z][0-9A-Z\-/]{1,9})\)")
# Longest text drawn as a label (the chart's width holds ~110 characters); the full text stays in <title>.
MAX_LABEL = 300


# The markup lives in templates/timeline_chart.svg (autoescaped macros); this module does the layout.
_ENV = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"), autoescape=True,
                   undefined=StrictUndefined, keep_trailing_newline=False)
_ENV.filters["f1"] = lambda value: f"{value:.1f}"
SVG: Any = _ENV.get_template("timeline_chart.svg").module  # its macros, called as SVG.<name>(...)


def fit(text: str, width: float, size: float) -> str:
    """The text cut with an ellipsis to fit `width` pixels at font `size` (estimated)."""
    room = max(4, int(width / (size * CHAR)))
    return text if len(text) <= room else text[: room - 1].rstrip(" ,;·") + "…"


def wrap(text: str, width: float, size: float, most: int = 2) -> list[str]:
    """Words in lines of `width` pixels at most, `most` lines, the last one cut with an ellipsis."""
    room, lines, current = max(4, int(width / (size * CHAR))), [], ""
    for word in text.split():
        if current and len(current) + 1 + len(word) > room:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}".strip()
    lines.append(current)
    return lines[: most - 1] + [fit(" ".join(lines[most - 1:]), width, size)] if len(lines) > most else lines


def text_width(text: str, size: float) -> float:
    return len(text) * size * CHAR


# -- time ------------------------------------------------------------------------------------------
def _year_fraction(iso: str) -> float:
    day = dt.date.fromisoformat(iso[:10])
    return day.year + (day.timetuple().tm_yday - 1) / 365.25


def number(frame: str, value) -> float | None:
    if value is None:
        return None
    return _year_fraction(value) if frame == "date" else float(value)


def position(span: dict | None) -> float | None:
    """Where a span is drawn: its proven earliest time, else its latest."""
    if not span:
        return None
    low = number(span["frame"], span.get("low"))
    return low if low is not None else number(span["frame"], span.get("high"))


def _fmt(frame: str, value, precision: str) -> str | None:
    if value is None:
        return None
    if frame == "date":
        return value[:{"year": 4, "month": 7}.get(precision, 10)]
    return f"{float(value):g}"


def time_label(span: dict | None) -> str:
    """'age ≥ 52.5', 'age 50–51', '2015-06', 'day ≤ 30': the bounds as recorded, at their precision."""
    if not span:
        return "time not recorded"
    frame, precision = span["frame"], span.get("precision", "unknown")
    low, high = _fmt(frame, span.get("low"), precision), _fmt(frame, span.get("high"), precision)
    prefix = {"age": "age ", "relative": "day ", "date": ""}[frame]
    if low is None and high is None:
        return "time not recorded"
    if low == high or (low is not None and high is not None and precision in ("day", "month", "year")):
        return f"{prefix}{low}"  # within its precision: an age in completed years, a date as written
    if frame == "age" and low is not None and high is not None and float(low).is_integer() and float(high) - float(low) <= 1.02:
        return f"{prefix}{low}"  # an age in completed years: the whole year of age
    if high is None:
        return f"{prefix}≥ {low}"
    if low is None:
        return f"{prefix}≤ {high}"
    return f"{prefix}{low}–{high}"


class Scale:
    """Maps one frame's values to x; ticks at a round step."""

    STEPS: ClassVar[dict[str, tuple[float, ...]]] = {"age": (0.25, 0.5, 1, 2, 5, 10, 20), "date": (0.25, 0.5, 1, 2, 5, 10, 20),
             "relative": (1, 7, 14, 30, 90, 180, 365, 730, 1825)}
    AXIS: ClassVar[dict[str, str]] = {"age": "Age (years)", "date": "Calendar year", "relative": "Days from the first recorded event"}

    def __init__(self, frame: str, values: list[float]):
        self.frame = frame
        lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
        span = max(hi - lo, 1.0 if frame != "relative" else 30.0)
        self.step = next((s for s in self.STEPS[frame] if span / s <= 9), self.STEPS[frame][-1])
        self.lo = math.floor((lo - span * 0.04) / self.step) * self.step
        self.hi = math.ceil((hi + span * 0.18) / self.step) * self.step  # room for open ends and labels

    def x(self, value: float) -> float:
        return X0 + (value - self.lo) / (self.hi - self.lo) * (X1 - X0)

    def ticks(self) -> list[float]:
        count = round((self.hi - self.lo) / self.step)
        return [self.lo + i * self.step for i in range(count + 1)]

    def tick_label(self, value: float) -> str:
        if self.frame == "date":
            return str(int(value)) if value == int(value) else f"{value:.2f}"
        return f"{value:g}"


# -- the chart -------------------------------------------------------------------------------------
class Chart:
    def __init__(self, summary: dict, markers: list[dict]):
        self.summary, self.markers = summary, markers
        self.lines = summary.get("lines") or []
        spans = self._spans()
        frames = Counter(s["frame"] for s in spans)
        self.frame = frames.most_common(1)[0][0] if frames else "age"
        values = [v for s in spans if s["frame"] == self.frame
                  for v in (number(self.frame, s.get("low")), number(self.frame, s.get("high"))) if v is not None]
        self.scale = Scale(self.frame, values)
        self.unplaced: list[str] = []
        self.parts: list[Markup] = []

    def _spans(self) -> list[dict]:
        s = self.summary
        found = [line[k] for line in self.lines for k in ("start", "end") if line.get(k)]
        found += [x["time"] for x in s.get("surgeries") or [] if x.get("time")]
        found += [e[k] for e in s.get("criticalEvents") or [] for k in ("start", "end") if e.get(k)]
        found += [m["time"] for m in self.markers if m.get("time")]
        death = s.get("death") or {}
        return found + ([death["time"]] if death.get("time") else [])

    def on_axis(self, span: dict | None) -> float | None:
        """x of a span on this chart's frame, or None (the caller lists it as not placed)."""
        if not span or span["frame"] != self.frame:
            return None
        value = position(span)
        return None if value is None else self.scale.x(value)

    def svg(self) -> str:
        y: float = 58  # an int until a lane adds fractions: the height is written as computed
        y = self._events(y)
        y = self._markers(y)
        lanes_top = y
        for line in self.lines:
            y = self._lane(line, y)
        body = Markup("").join(self.parts)
        self.parts = []
        self._grid(lanes_top, y)
        grid = Markup("").join(self.parts)
        title = f"Treatment timeline: {len(self.lines)} lines of therapy, {Scale.AXIS[self.frame].lower()}"
        return str(SVG.chart(WIDTH, y + 16, self.frame, title, SVG.defs(), grid, body))

    # -- axis and grid -------------------------------------------------------------------------
    def _grid(self, lanes_top: float, bottom: float) -> None:
        p, s, axis = self.parts, self.scale, Scale.AXIS[self.frame]
        p.append(SVG.headings(LABEL_X, OUT_X, (X0 + X1) / 2, axis))
        p.append(SVG.axis(axis, [(s.x(value), s.tick_label(value)) for value in s.ticks()], X0, X1, bottom))
        death = self.summary.get("death") or {}
        x = self.on_axis(death.get("time"))
        if x is not None:
            p.append(SVG.death_line(x, bottom, f"Death, {time_label(death['time'])}: end of follow-up"))

    # -- tracks of point events ------------------------------------------------------------------
    def _events(self, y: float) -> float:
        items = []
        for s in self.summary.get("surgeries") or []:
            intent = f" ({s['intent'].split(' - ')[0].lower()})" if s.get("intent") else ""
            items.append(("surgery", _plain(s["text"]) + intent, s["time"], None, f"Surgery: {s['text']}{intent}"))
        for e in self.summary.get("criticalEvents") or []:
            what = "Intensive care" if e["kind"] == "intensive-care" else "Critical event"
            items.append(("critical-event", _plain(e["text"]), e["start"], e.get("end"), f"{what}: {e['text']}"))
        death = self.summary.get("death")
        if death:
            last = death.get("lastLineResponse")
            extra = f"; last documented response: {RESPONSE.get(last['category'], last['category'])} (line {last['line']})" if last else ""
            items.append(("death", "Death", death.get("time"), None, f"Death{extra}"))
        return self._track(y, "Surgery · critical events · death", "events", items, "No surgery, critical event or death recorded")

    def _markers(self, y: float) -> float:
        items = []
        for m in self.markers:
            label = f"{m['name']} {m['value']}" + (f" ({m['interpretation']})" if m["interpretation"] and m["interpretation"] not in m["value"] else "")
            span, relation = m.get("time"), m.get("relation")
            if position(span) is None and relation:
                line = next(line for line in self.lines if line["number"] == relation["line"])
                span = dict(line["start"], relation=relation["side"]) if line.get("start") else None
            note = m.get("note") or ""
            title = f"Tumour marker {m['fullName']}: {m['value']}" + (f", {m['interpretation']}" if m["interpretation"] else "")
            if note:
                title += f" ({note})"
            kind = "biomarker-" + ("abnormal" if m["abnormal"] else "normal" if m["interpretation"] else "uninterpreted")
            items.append((kind, label, span, None, title, note))
        return self._track(y, "Tumour markers", "biomarkers", items, "No tumour-marker values recorded")

    def _track(self, y: float, heading: str, name: str, items: list[tuple], empty: str) -> float:
        outer, self.parts = self.parts, []  # the points drawn inside the track's group
        rows: list[float] = []
        placed = 0
        for kind, label, span, end, title, *rest in sorted(items, key=lambda i: self.on_axis(i[2]) or 0.0):
            x = self.on_axis(span)
            if x is None:
                self.unplaced.append(f"{title} ({time_label(span)})")
                continue
            when, note = time_label(span), rest[0] if rest and rest[0] else ""
            if span.get("relation"):
                when = f"{span['relation']} line {self._line_at(span)} start"
                text = f"{label} · {note or when}"
            else:
                text = f"{label} · {when}" + (f" ({note})" if note else "")
            text = fit(text, WIDTH - X0 - 30, 11)
            row, anchor = _pack(rows, x, text_width(text, 11) + 30)
            ry = y + 12 + row * 19
            self._point(kind, x, ry, text, anchor, f"{title}; {when}", span, end)
            placed += 1
        points, self.parts = Markup("").join(self.parts), outer
        self.parts.append(SVG.track(name, heading, LABEL_X, y + 12, points, X0, None if placed else empty))
        bottom = y + 12 + max(1, len(rows)) * 19 + 4
        self.parts.append(SVG.sep(bottom, WIDTH))
        return bottom + 6

    def _line_at(self, span: dict) -> int | str:
        return next((line["number"] for line in self.lines if line.get("start") and
                     {k: line["start"][k] for k in ("low", "high")} == {k: span.get(k) for k in ("low", "high")}), "?")

    def _point(self, kind: str, x: float, y: float, text: str, anchor: str, title: str, span: dict, end: dict | None) -> None:
        data_kind = "biomarker" if kind.startswith("biomarker") else kind
        end_x = self.on_axis(end)
        if end_x is not None and end_x <= x + 1:
            end_x = None  # an end at the point itself draws no span
        open_before = span.get("relation") == "before"
        open_after = not open_before and span.get("high") is None and span.get("low") is not None
        tx = (x + (26 if open_after else 10)) if anchor == "start" else x - 10
        self.parts.append(SVG.point(kind, data_kind, x, y, title, end_x, open_before, open_after, tx, anchor, text))

    # -- lanes -----------------------------------------------------------------------------------
    def _lane(self, line: dict, top: float) -> float:
        n = line["number"]
        outer, p = self.parts, list[Markup]()  # what the lane's group holds, drawn over its background
        self.parts = p
        p.append(SVG.lane_label(n, LABEL_X, top + 18, f"Line {n} · {line['modality']}", fit(regimen(line), LABEL_W, 12.5)))
        y = top + 18 + 2 * ROW + 2
        for cls, kind, role, text, title in _component_rows(line) + self._flag_rows(n):
            lines = wrap(text, LABEL_W - 8, 11)
            p.append(SVG.label_row(cls, kind, role, n, LABEL_X + 8, y, title, lines, ROW - 2))
            y += ROW - 2 + (len(lines) - 1) * (ROW - 2) + 2
        left_bottom, y = y, top + 18
        for key, text, title in _outcome_rows(line):
            lines = wrap(text, OUT_W, 11.5)
            p.append(SVG.outcome_row(key, n, OUT_X, y, title, lines, ROW - 2))
            y += ROW + (len(lines) - 1) * (ROW - 2)
        bottom = max(left_bottom, y, top + 64) + 2
        self._bar(line, top + 14)
        self.parts = outer
        outer.append(SVG.lane(n, f"Line {n}: {line['modality']}, {regimen(line)}", top, WIDTH, bottom - top,
                              Markup("").join(p), bottom))
        return bottom

    def _flag_rows(self, n: int) -> list[tuple]:
        rows = []
        for flag in self.summary.get("flags") or []:
            if n in (flag.get("lines") or []) and flag["code"] != "end-unknown":
                rows.append(("flag", "flag", None, f"⚠ {flag['code']}: lines {', '.join(map(str, flag['lines']))}", flag["message"]))
        return rows

    def _bar(self, line: dict, y: float) -> None:
        n, p = line["number"], self.parts
        x = self.on_axis(line.get("start"))
        if x is None:
            self.unplaced.append(f"Line {n} start ({time_label(line.get('start'))})")
            p.append(SVG.unplaced_start(n, X0, y + 12, time_label(line.get("start"))))
            return
        end_x = self.on_axis(line.get("end"))
        width = max(6.0, (end_x or x) - x)
        cls = MODALITY_CLASS.get(line["modality"], "m-systemic")
        duration = _duration(line)
        backbone = any(c["role"] == "backbone" for c in line["components"])
        end_text = self._end_text(line)
        title = f"Line {n} ({line['modality']}): start {time_label(line['start'])}, end {end_text}; {duration}"
        tail_x = x + width
        label = f"{time_label(line['start'])} → {end_text.removeprefix(line['start']['frame'] + ' ')}"
        if line.get("ongoing"):
            end = "ongoing"
        elif line.get("end") is None:
            end = "unknown"
        else:
            end = "bound" if line["end"].get("high") is None else "closed"
        end_label = time_label(line["end"]) if end == "bound" else ""
        p.append(SVG.bar(n, cls, x, y, width, title, backbone, end, tail_x, X1 + 24 - tail_x, end_label, duration, label))

    def _end_text(self, line: dict) -> str:
        if line.get("ongoing"):
            return "ongoing"
        return time_label(line["end"]) if line.get("end") else "end not recorded"


def _plain(text: str) -> str:
    """The text without its parenthetical remarks (kept in the element's title), and the blanks before each.

    A scan with str.find, not re.sub(r"\\s*\\([^)]*\\)"): that pattern retries every blank of a long run and
    took 8.5 s on 100,000 spaces. The label is also cut to MAX_LABEL first: no drawn label is longer."""
    text = text[:MAX_LABEL]
    kept, at = [], 0
    while (opening := text.find("(", at)) >= 0 and (closing := text.find(")", opening)) >= 0:
        kept.append(text[at:opening].rstrip())
        at = closing + 1
    kept.append(text[at:])
    return "".join(kept).strip() or text


def _pack(rows: list[float], x: float, width: float) -> tuple[int, str]:
    """First row whose last label ends left of this one; labels near the right edge run leftwards."""
    anchor = "start" if x + width < WIDTH - 8 else "end"
    left = x - 8 if anchor == "start" else x - width
    right = x + width if anchor == "start" else x + 8
    for i, end in enumerate(rows):
        if end < left - 6:
            rows[i] = right
            return i, anchor
    rows.append(right)
    return len(rows) - 1, anchor


# -- words ---------------------------------------------------------------------------------------
def short(component: dict) -> str:
    text = (component.get("text") or (component.get("code") or {}).get("display") or component.get("class", ""))[:MAX_LABEL]
    found = ABBREVIATION.search(text)
    if found:
        return found.group(1)
    head = re.split(r" \(|, ", text)[0]
    if len(head) > 22 and component.get("class") in CLASS_SHORT:
        return CLASS_SHORT[component["class"]]
    return head


def regimen(line: dict) -> str:
    """'TAE + 5-FU/Streptozotocin': line agents, systemic agents of one class joined by '/'."""
    groups: dict[str, list[str]] = {}
    for c in sorted(line["components"], key=lambda c: c["resourceType"] != "Procedure"):
        if c["role"] == "line":
            names = groups.setdefault(c["class"], [])
            if short(c) not in names:
                names.append(short(c))
    return " + ".join("/".join(names) for names in groups.values()) or "no line therapy recorded"


def _component_rows(line: dict) -> list[tuple]:
    rows = []
    for c in line["components"]:
        detail = " ".join(x for x in (c.get("dose"), c.get("route"), c.get("frequency")) if x)
        prefix = {"line": "", "backbone": "backbone · ", "supportive": "supportive · "}[c["role"]]
        sites = f"; site: {', '.join(c['sites'])}" if c.get("sites") else ""
        title = f"{c['role']} therapy ({c['class']}): {c['text']}{' ' + detail if detail else ''}{sites}; status {c.get('status')}"
        rows.append((f"component role-{c['role']}", "component", c["role"], f"{prefix}{c['text']}{' ' + detail if detail else ''}", title))
    return rows


def _outcome_rows(line: dict) -> list[tuple[str, str, str]]:
    out, rows = line["outcomes"], []
    radio = out.get("bestRadiologicalResponse")
    if radio:
        words = RESPONSE.get(radio["category"], radio["category"])
        status = " (minor response, improved)" if radio.get("status") == "improved" else ""
        rows.append(("radiological", f"Best radiological response: {words}{status}", radio.get("text") or words))
    symptoms = out.get("syndromeControl")
    if symptoms:
        rows.append(("syndrome-control", f"Symptom control: {symptoms['value']}{_for(symptoms.get('duration'))}", symptoms.get("text") or ""))
    markers = out.get("biomarkerResponse")
    if markers:
        names = ", ".join(markers.get("markers") or [])
        rows.append(("biomarker-response", f"Biomarkers: {markers['value']}{' · ' + names if names else ''}{_for(markers.get('duration'))}",
                     markers.get("text") or ""))
    for c in out.get("complications") or []:
        state = "resolved" if c.get("resolved") else "unresolved"
        rows.append(("complication", f"Complication ({state}): {c['text']}", c["text"]))
    rows.append(_end_row(line))
    ttnt = line.get("timeToNextTreatment") or {}
    if ttnt.get("days") is not None or ttnt.get("minDays"):
        days = f"{ttnt['days']} d" if ttnt.get("days") is not None else f"≥ {ttnt['minDays']} d"
        rows.append(("time-to-next", f"Time to next line: {days}", ttnt.get("reason") or days))
    return rows


def _end_row(line: dict) -> tuple[str, str, str]:
    if line.get("ongoing"):
        return ("end-reason", "Ongoing (no end recorded)", "The line is still running")
    reason = line.get("endReason")
    if not reason:
        return ("end-reason", "End reason: not recorded", "No evidence for why the line ended")
    return ("end-reason", f"Ended by: {reason['code'].replace('-', ' ')}", f"rule {reason['rule']}")


def _for(duration: dict | None) -> str:
    if not duration:
        return ""
    code = duration.get("unit") or ""
    unit = {"a": "year", "mo": "month", "wk": "week", "d": "day"}.get(code, code)
    value = duration.get("value")
    return f" for {value:g} {unit}{'s' if value != 1 else ''}"


def _duration(line: dict) -> str:
    d = line.get("duration") or {}
    if d.get("days") is not None:
        return f"duration {d['days']} days"
    if d.get("minDays") is not None or d.get("maxDays") is not None:
        lo, hi = d.get("minDays"), d.get("maxDays")
        return f"duration {'≥ ' + str(lo) if hi is None else f'{lo}–{hi}' if lo is not None else '≤ ' + str(hi)} days (bounds only)"
    return d.get("reason") or "duration not computable"


# -- legend ---------------------------------------------------------------------------------------
# (shape drawn by templates/timeline_chart.svg's legend_shape, label)
LEGEND = [
    ("systemic", "Systemic line"), ("liver", "Liver-directed line"), ("combined", "Combined line"),
    ("radio", "Radionuclide line"), ("backbone", "SSA backbone"), ("open-end", "Open end (only “at or after”)"),
    ("end-unknown", "End not recorded"), ("surgery", "Surgery"), ("critical", "Critical event (ICU, stroke, PE…)"),
    ("death", "Death"), ("bio-abnormal", "Tumour marker, abnormal"), ("bio-normal", "Tumour marker, normal"),
    ("bio-plain", "Tumour marker, no interpretation recorded"),
]


def legend() -> str:
    cols, col_w, row_h = 4, 290, 22
    rows = math.ceil(len(LEGEND) / cols)
    items = [(10 + (i % cols) * col_w, 16 + (i // cols) * row_h, key, label) for i, (key, label) in enumerate(LEGEND)]
    return str(SVG.legend(WIDTH, rows * row_h + 10, items))

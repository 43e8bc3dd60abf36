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
from html import escape
from typing import ClassVar

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


def esc(text) -> str:
    return escape(str(text), quote=True)


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


def tspans(lines: list[str], x: float) -> str:
    return "".join(f'<tspan x="{x:.1f}"{" dy=" + chr(34) + str(ROW - 2) + chr(34) if i else ""}>{esc(t)}</tspan>'
                   for i, t in enumerate(lines))


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
    if frame == "age" and None not in (low, high) and float(low).is_integer() and float(high) - float(low) <= 1.02:
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
        self.parts: list[str] = []

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
        y = 58
        y = self._events(y)
        y = self._markers(y)
        lanes_top = y
        for line in self.lines:
            y = self._lane(line, y)
        body = "".join(self.parts)
        self.parts = []
        self._grid(lanes_top, y)
        grid = "".join(self.parts)
        height = y + 16
        return (f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" viewBox="0 0 {WIDTH} {height}" '
                f'width="{WIDTH}" height="{height}" aria-labelledby="chart-title" data-frame="{self.frame}">'
                f'<title id="chart-title">Treatment timeline: {len(self.lines)} lines of therapy, '
                f'{esc(Scale.AXIS[self.frame].lower())}</title>{defs()}{grid}{body}</svg>')

    # -- axis and grid -------------------------------------------------------------------------
    def _grid(self, lanes_top: float, bottom: float) -> None:
        p, s = self.parts, self.scale
        p.append(f'<text class="col-head" x="{LABEL_X}" y="22" data-kind="heading">Line of therapy</text>')
        p.append(f'<text class="col-head" x="{OUT_X}" y="22" data-kind="heading">Outcomes and end of line</text>')
        p.append(f'<text class="col-head" x="{(X0 + X1) / 2:.1f}" y="22" text-anchor="middle" data-kind="axis-title">'
                 f'{esc(Scale.AXIS[self.frame])}</text>')
        p.append(f'<g class="axis"><title>{esc(Scale.AXIS[self.frame])}</title>')
        for value in s.ticks():
            x = s.x(value)
            p.append(f'<line class="grid" x1="{x:.1f}" y1="44" x2="{x:.1f}" y2="{bottom:.1f}"/>'
                     f'<text class="tick" x="{x:.1f}" y="40" text-anchor="middle" data-kind="tick">{s.tick_label(value)}</text>')
        p.append(f'<line class="axis-line" x1="{X0}" y1="44" x2="{X1}" y2="44"/></g>')
        death = self.summary.get("death") or {}
        x = self.on_axis(death.get("time"))
        if x is not None:
            p.append(f'<line class="death-line" x1="{x:.1f}" y1="44" x2="{x:.1f}" y2="{bottom:.1f}">'
                     f'<title>Death, {esc(time_label(death["time"]))}: end of follow-up</title></line>')

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
        p = self.parts
        p.append(f'<g class="track" data-track="{name}"><title>{esc(heading)}</title>')
        p.append(f'<text class="track-head" x="{LABEL_X}" y="{y + 12:.1f}" data-kind="track-label">{esc(heading)}</text>')
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
        if not placed:
            p.append(f'<text class="empty" x="{X0}" y="{y + 12:.1f}" data-kind="none">{esc(empty)}</text>')
        p.append("</g>")
        bottom = y + 12 + max(1, len(rows)) * 19 + 4
        p.append(f'<line class="sep" x1="0" y1="{bottom:.1f}" x2="{WIDTH}" y2="{bottom:.1f}"/>')
        return bottom + 6

    def _line_at(self, span: dict) -> int | str:
        return next((line["number"] for line in self.lines if line.get("start") and
                     {k: line["start"][k] for k in ("low", "high")} == {k: span.get(k) for k in ("low", "high")}), "?")

    def _point(self, kind: str, x: float, y: float, text: str, anchor: str, title: str, span: dict, end: dict | None) -> None:
        data_kind = "biomarker" if kind.startswith("biomarker") else kind
        shape = {
            "surgery": f'<path class="mk-surgery" d="M{x:.1f},{y - 6:.1f} l6,11 h-12 z"/>',
            "critical-event": f'<path class="mk-critical" d="M{x:.1f},{y - 7:.1f} l6,7 l-6,7 l-6,-7 z"/>',
            "death": f'<path class="mk-death" d="M{x - 1.6:.1f},{y - 8:.1f} h3.2 v4 h4 v3.2 h-4 v8 h-3.2 v-8 h-4 v-3.2 h4 z"/>',
            "biomarker-abnormal": f'<circle class="mk-bio-abnormal" cx="{x:.1f}" cy="{y:.1f}" r="5"/>',
            "biomarker-normal": f'<circle class="mk-bio-normal" cx="{x:.1f}" cy="{y:.1f}" r="5"/>',
            "biomarker-uninterpreted": f'<circle class="mk-bio-plain" cx="{x:.1f}" cy="{y:.1f}" r="5"/>',
        }[kind]
        extra = ""
        end_x = self.on_axis(end)
        if end_x is not None and end_x > x + 1:
            extra = f'<rect class="ev-span" x="{x:.1f}" y="{y - 2:.1f}" width="{end_x - x:.1f}" height="4"/>'
        if span.get("relation") == "before":
            extra += f'<rect class="open-before" x="{x - 26:.1f}" y="{y - 2:.1f}" width="26" height="4" fill="url(#fade-left)"/>'
        elif span.get("high") is None and span.get("low") is not None:
            extra += f'<rect class="open-after" x="{x:.1f}" y="{y - 2:.1f}" width="20" height="4" fill="url(#fade-right)"/>'
        tx = (x + (26 if "open-after" in extra else 10)) if anchor == "start" else x - 10
        self.parts.append(
            f'<g class="point" data-kind="{data_kind}-marker"><title>{esc(title)}</title>{extra}{shape}</g>'
            f'<text class="pt-label" x="{tx:.1f}" y="{y + 4:.1f}" text-anchor="{anchor}" data-kind="{data_kind}">{esc(text)}</text>')

    # -- lanes -----------------------------------------------------------------------------------
    def _lane(self, line: dict, top: float) -> float:
        n, p = line["number"], self.parts
        p.append(f'<g class="lane" data-line="{n}"><title>Line {n}: {esc(line["modality"])}, {esc(regimen(line))}</title>')
        background = len(p)
        p.append("")
        name = f"Line {n} · {line['modality']}"
        p.append(f'<text class="lane-label" x="{LABEL_X}" y="{top + 18:.1f}" data-line="{n}" data-kind="lane-label">'
                 f'<tspan class="lane-name">{esc(name)}</tspan><tspan x="{LABEL_X}" dy="16" class="lane-regimen">'
                 f'{esc(fit(regimen(line), LABEL_W, 12.5))}</tspan></text>')
        y = top + 18 + 2 * ROW + 2
        for cls, kind, role, text, title in _component_rows(line) + self._flag_rows(n):
            lines = wrap(text, LABEL_W - 8, 11)
            p.append(f'<text class="{cls}" x="{LABEL_X + 8}" y="{y:.1f}" data-line="{n}" data-kind="{kind}"'
                     f'{f" data-role={chr(34)}{role}{chr(34)}" if role else ""}><title>{esc(title)}</title>'
                     f'{tspans(lines, LABEL_X + 8)}</text>')
            y += ROW - 2 + (len(lines) - 1) * (ROW - 2) + 2
        left_bottom, y = y, top + 18
        for key, text, title in _outcome_rows(line):
            lines = wrap(text, OUT_W, 11.5)
            p.append(f'<text class="outcome o-{key}" x="{OUT_X}" y="{y:.1f}" data-line="{n}" data-kind="outcome" '
                     f'data-outcome="{key}"><title>{esc(title)}</title>{tspans(lines, OUT_X)}</text>')
            y += ROW + (len(lines) - 1) * (ROW - 2)
        bottom = max(left_bottom, y, top + 64) + 2
        p[background] = f'<rect class="lane-bg lane-{n % 2}" x="0" y="{top:.1f}" width="{WIDTH}" height="{bottom - top:.1f}"/>'
        self._bar(line, top + 14)
        p.append(f'<line class="sep" x1="0" y1="{bottom:.1f}" x2="{WIDTH}" y2="{bottom:.1f}"/></g>')
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
            p.append(f'<text class="time" x="{X0}" y="{y + 12:.1f}" data-line="{n}" data-kind="time">'
                     f'start not on this axis: {esc(time_label(line.get("start")))}</text>')
            return
        end_x = self.on_axis(line.get("end"))
        width = max(6.0, (end_x or x) - x)
        cls = MODALITY_CLASS.get(line["modality"], "m-systemic")
        duration = _duration(line)
        if any(c["role"] == "backbone" for c in line["components"]):
            p.append(f'<rect class="backbone" x="{x:.1f}" y="{y + 16:.1f}" width="{width + 34:.1f}" height="5" data-line="{n}" '
                     f'data-kind="backbone-bar"><title>Backbone (SSA) running through line {n}</title></rect>')
        p.append(f'<rect class="bar {cls}" x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="14" rx="2" data-line="{n}" '
                 f'data-kind="line-bar"><title>Line {n} ({esc(line["modality"])}): start {esc(time_label(line["start"]))}, '
                 f'end {esc(self._end_text(line))}; {esc(duration)}</title></rect>')
        tail_x = x + width
        end_text = self._end_text(line)
        label = f"{time_label(line['start'])} → {end_text.removeprefix(line['start']['frame'] + ' ')}"
        if line.get("ongoing"):
            p.append(f'<rect class="open-end ongoing" x="{tail_x:.1f}" y="{y:.1f}" width="{X1 + 24 - tail_x:.1f}" height="14" '
                     f'fill="url(#hatch)" mask="url(#fade-mask)" data-line="{n}" data-kind="open-end"><title>Line {n} is ongoing: '
                     f'no end recorded</title></rect>')
        elif line.get("end") is None:
            p.append(f'<rect class="open-end unknown" x="{tail_x:.1f}" y="{y + 1:.1f}" width="40" height="12" '
                     f'data-line="{n}" data-kind="open-end"><title>Line {n}: end not recorded</title></rect>')
        elif line["end"].get("high") is None:
            p.append(f'<rect class="open-end bound" x="{tail_x:.1f}" y="{y:.1f}" width="34" height="14" '
                     f'fill="url(#hatch)" mask="url(#fade-mask)" data-line="{n}" data-kind="open-end"><title>Line {n} ended '
                     f'{esc(time_label(line["end"]))}: only a lower bound is recorded</title></rect>')
        p.append(f'<text class="time" x="{x:.1f}" y="{y + 34:.1f}" data-line="{n}" data-kind="time">'
                 f'<title>{esc(duration)}</title>{esc(label)}</text>')

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
    unit = {"a": "year", "mo": "month", "wk": "week", "d": "day"}.get(duration.get("unit"), duration.get("unit", ""))
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


# -- shared definitions and legend ---------------------------------------------------------------
def defs() -> str:
    return ('<defs>'
            '<pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
            '<rect width="6" height="6" class="hatch-bg"/><line x1="0" y1="0" x2="0" y2="6" class="hatch-line"/></pattern>'
            '<linearGradient id="fade-g" x1="0" x2="1" y1="0" y2="0"><stop offset="0" stop-color="#fff" stop-opacity="1"/>'
            '<stop offset="1" stop-color="#fff" stop-opacity="0"/></linearGradient>'
            '<mask id="fade-mask" maskContentUnits="objectBoundingBox"><rect width="1" height="1" fill="url(#fade-g)"/></mask>'
            '<linearGradient id="fade-right" x1="0" x2="1"><stop offset="0" class="fade-stop" stop-opacity="0.9"/>'
            '<stop offset="1" class="fade-stop" stop-opacity="0"/></linearGradient>'
            '<linearGradient id="fade-left" x1="1" x2="0"><stop offset="0" class="fade-stop" stop-opacity="0.9"/>'
            '<stop offset="1" class="fade-stop" stop-opacity="0"/></linearGradient>'
            '</defs>')


LEGEND = [
    ('<rect x="0" y="-7" width="26" height="12" rx="2" class="bar m-systemic"/>', "Systemic line"),
    ('<rect x="0" y="-7" width="26" height="12" rx="2" class="bar m-liver"/>', "Liver-directed line"),
    ('<rect x="0" y="-7" width="26" height="12" rx="2" class="bar m-combined"/>', "Combined line"),
    ('<rect x="0" y="-7" width="26" height="12" rx="2" class="bar m-radio"/>', "Radionuclide line"),
    ('<rect x="0" y="-2" width="26" height="5" class="backbone"/>', "SSA backbone"),
    ('<rect x="0" y="-7" width="26" height="12" fill="url(#hatch)" mask="url(#fade-mask)" class="open-end"/>', "Open end (only “at or after”)"),
    ('<rect x="0" y="-6" width="26" height="10" class="open-end unknown"/>', "End not recorded"),
    ('<path class="mk-surgery" d="M13,-6 l6,11 h-12 z"/>', "Surgery"),
    ('<path class="mk-critical" d="M13,-7 l6,7 l-6,7 l-6,-7 z"/>', "Critical event (ICU, stroke, PE…)"),
    ('<path class="mk-death" d="M11.4,-8 h3.2 v4 h4 v3.2 h-4 v8 h-3.2 v-8 h-4 v-3.2 h4 z"/>', "Death"),
    ('<circle class="mk-bio-abnormal" cx="13" cy="0" r="5"/>', "Tumour marker, abnormal"),
    ('<circle class="mk-bio-normal" cx="13" cy="0" r="5"/>', "Tumour marker, normal"),
    ('<circle class="mk-bio-plain" cx="13" cy="0" r="5"/>', "Tumour marker, no interpretation recorded"),
]


def legend() -> str:
    cols, col_w, row_h = 4, 290, 22
    rows = math.ceil(len(LEGEND) / cols)
    items = []
    for i, (shape, label) in enumerate(LEGEND):
        x, y = 10 + (i % cols) * col_w, 16 + (i // cols) * row_h
        items.append(f'<g transform="translate({x},{y})" data-kind="legend-item"><title>{esc(label)}</title>{shape}'
                     f'<text x="34" y="4" class="legend-label">{esc(label)}</text></g>')
    height = rows * row_h + 10
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="legend" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" '
            f'height="{height}" aria-labelledby="legend-title"><title id="legend-title">Legend</title>{"".join(items)}</svg>')

"""Refused requests (401, 403, 429) are all audited, at a bounded cost: a flood cannot grow the audit table per request.

Per caller (client address, client name, status) and window (GATEWAY_AUDIT_REFUSAL_WINDOW_SECONDS, 60 s) the
first GATEWAY_AUDIT_REFUSALS_PER_WINDOW (10) refusals are recorded one by one, as before; the rest are counted in
this process and written as one aggregate AuditEvent when the window ends (a timer thread), when the trail is
listed, and at process exit. The aggregate is the caller's last refused request with `period` (first and last
request counted), the count in `entity.detail` ("refusals"), the routes it asked for and up to MAX_PATIENTS
patients they named. At most GATEWAY_AUDIT_REFUSAL_CALLERS (1000) callers are tracked per process; beyond that the
refusals of new callers are folded into one aggregate per status (`agent.network` absent, the number of addresses
in `entity.detail`). So a window costs at most callers × (per-window + 1) + 3 rows per process, whatever the rate.

A SIGKILL or crash of the process loses the counts not yet written (at most one window's); the individual rows
of each caller's first refusals are written at once, so every caller that was refused is always on record.
"""
from __future__ import annotations

import atexit
import copy
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

from flask import Flask, current_app

from mappings.fhir_vocabulary import instant, now_instant

REFUSED = frozenset({401, 403, 429})
MAX_PATIENTS = 50  # patients named by one aggregate
MAX_ROUTES = 20    # routes listed by one aggregate; requests to further routes are counted together
MAX_ROUTE_CHARS = 200
OTHER_ROUTES = "other routes"
MAX_ADDRESSES = 10_000  # distinct addresses counted by the overflow aggregate
OVERFLOW = "*"     # the address of the bucket that folds callers beyond the tracked number

Sink = Callable[[dict], None]


@dataclass
class _Window:
    started: float
    individual: int = 0   # refusals of this window recorded one by one
    count: int = 0        # refusals counted since the last aggregate
    first: float = 0.0
    last: float = 0.0
    event: dict | None = None  # the last refused request's event: the aggregate's template
    routes: dict[str, int] = field(default_factory=dict)
    patients: set[str] = field(default_factory=set)
    addresses: set[str] = field(default_factory=set)


def _caller(event: dict) -> tuple[str, str]:
    agent = event["agent"][0]
    return agent.get("network", {}).get("address", "unknown"), agent["who"]["identifier"]["value"]


def _route(event: dict) -> str:
    # The route pattern, or for a path no route matches the path itself: the client's text, so it is cut.
    return str(event["entity"][-1].get("description", ""))[:MAX_ROUTE_CHARS]


def _patients(event: dict) -> list[str]:
    return [e["what"]["reference"] for e in event["entity"] if str(e.get("what", {}).get("reference", "")).startswith("Patient/")]


def _aggregate(window: _Window, overflow: bool) -> dict:
    """One AuditEvent for the refusals a window counted."""
    assert window.event is not None
    event = copy.deepcopy(window.event)
    event["recorded"] = now_instant()
    event["period"] = {"start": instant(int(window.first * 1000)), "end": instant(int(window.last * 1000))}
    routes = sorted(window.routes.items(), key=lambda kv: (-kv[1], kv[0]))
    listed = ", ".join(f"{route} ×{n}" for route, n in routes)
    system_object = event["entity"][-1]
    system_object["description"] = f"{window.count} refused requests ({event['outcomeDesc']}): {listed}"
    detail = [{"type": "refusals", "valueString": str(window.count)}]
    if overflow:
        event["agent"][0].pop("network", None)
        event["agent"][0]["who"] = {"identifier": {"value": "callers beyond the tracked number"}}
        detail.append({"type": "addresses", "valueString": str(len(window.addresses))
                       + ("+" if len(window.addresses) >= MAX_ADDRESSES else "")})
    system_object["detail"] = detail
    person = {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1", "display": "Person"}
    event["entity"] = [{"what": {"reference": ref}, "type": person} for ref in sorted(window.patients)] + [system_object]
    return event


class RefusalAudit:
    """The per-process state: callers' windows, and the timer that writes aggregates when windows end."""

    def __init__(self, app: Flask, sink: Sink):
        self.window = float(app.config.get("AUDIT_REFUSAL_WINDOW", 60))
        self.per_window = int(app.config.get("AUDIT_REFUSALS_PER_WINDOW", 10))
        self.max_callers = int(app.config.get("AUDIT_REFUSAL_CALLERS", 1000))
        self.sink = sink
        self.lock = threading.Lock()
        self.windows: dict[tuple[str, str, int], _Window] = {}
        self._app = weakref.ref(app)
        self._timer: threading.Thread | None = None

    def offer(self, event: dict, status: int, now: float | None = None) -> bool:
        """True when the event was counted into an aggregate (the caller must not record it itself)."""
        now = time.time() if now is None else now
        address, client = _caller(event)
        due = []
        with self.lock:
            key = (address, client, status)
            window = self.windows.get(key)
            if window is None and len(self.windows) >= self.max_callers:
                due = self._close_ended(now)  # callers that went quiet make room first
            if window is None and len(self.windows) >= self.max_callers:
                key = (OVERFLOW, "", status)
                window = self.windows.get(key)
            if window is not None and now - window.started >= self.window:
                due += self._close(key, window)
                window = None
            if window is None:
                window = self.windows[key] = _Window(started=now)
            if window.individual < self.per_window and key[0] != OVERFLOW:
                window.individual += 1
                absorbed = False
            else:
                self._count(window, event, address, now)
                absorbed = True
        for aggregate in due:
            self.sink(aggregate)
        if absorbed:
            self._start_timer()
        return absorbed

    def _count(self, window: _Window, event: dict, address: str, now: float) -> None:
        if window.count == 0:
            window.first = now
        window.count += 1
        window.last = now
        window.event = event
        route = _route(event)
        if route not in window.routes and len(window.routes) >= MAX_ROUTES:
            route = OTHER_ROUTES
        window.routes[route] = window.routes.get(route, 0) + 1
        for ref in _patients(event):
            if len(window.patients) < MAX_PATIENTS:
                window.patients.add(ref)
        if len(window.addresses) < MAX_ADDRESSES:
            window.addresses.add(address)

    def _close(self, key: tuple[str, str, int], window: _Window) -> list[dict]:
        """The aggregate of a window (if it counted anything); the window is forgotten. Under self.lock."""
        del self.windows[key]
        return [_aggregate(window, key[0] == OVERFLOW)] if window.count else []

    def _close_ended(self, now: float) -> list[dict]:
        """Forget every window that ended; the aggregates of those that counted refusals. Under self.lock."""
        return [a for key, window in list(self.windows.items()) if now - window.started >= self.window
                for a in self._close(key, window)]

    def flush(self, everything: bool = False, now: float | None = None) -> int:
        """Write the aggregates of windows that ended (all counted so far when `everything`); their number."""
        now = time.time() if now is None else now
        with self.lock:
            out = self._close_ended(now)
            for key, window in self.windows.items():
                if everything and window.count:
                    # The window goes on (its callers stay aggregated); what it counted is written now.
                    out.append(_aggregate(window, key[0] == OVERFLOW))
                    window.count, window.routes, window.patients, window.addresses = 0, {}, set(), set()
        for aggregate in out:
            self.sink(aggregate)
        return len(out)

    def _start_timer(self) -> None:
        if self._timer is not None and self._timer.is_alive():
            return
        with self.lock:
            if self._timer is not None and self._timer.is_alive():
                return
            self._timer = threading.Thread(target=_tick, args=(weakref.ref(self),), name="audit-refusals", daemon=True)
            self._timer.start()

    def flush_in_app(self, everything: bool = False) -> None:
        app = self._app()
        if app is not None:
            with app.app_context():
                self.flush(everything)


def _tick(ref: weakref.ref) -> None:
    """Write ended windows' aggregates; stops when the gateway is gone or nothing is left to count."""
    while True:
        audit = ref()
        if audit is None:
            return
        pause = max(0.05, min(audit.window / 4, 5.0))
        del audit
        time.sleep(pause)
        audit = ref()
        if audit is None:
            return
        audit.flush_in_app()
        with audit.lock:
            if not any(w.count for w in audit.windows.values()):
                audit._timer = None
                return
        del audit


_instances: weakref.WeakSet[RefusalAudit] = weakref.WeakSet()


@atexit.register
def _flush_at_exit() -> None:
    for audit in list(_instances):
        audit.flush_in_app(everything=True)


def _audit(sink: Sink) -> RefusalAudit:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    audit = app.extensions.get("audit_refusals")
    if audit is None:
        audit = app.extensions.setdefault("audit_refusals", RefusalAudit(app, sink))
        _instances.add(audit)
    return audit


def absorbed(event: dict, status: int, sink: Sink) -> bool:
    """Count a refused request's event into its caller's aggregate (True), or let the caller record it (False)."""
    if status not in REFUSED:
        return False
    return _audit(sink).offer(event, status)


def flush_all() -> None:
    """Before the trail is listed: every count so far becomes an aggregate row."""
    audit = current_app.extensions.get("audit_refusals")
    if audit is not None:
        audit.flush(everything=True)

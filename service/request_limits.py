"""Bounds on the work one request line can ask for, checked before any handler runs: the URL length (414) and
the number of values of one search parameter, repeated or comma-separated, in the query and in a POST _search
form body together (400). A search over 20,000 codes used to take 84 s; the store's indexes make each value
cheap, these caps keep the count small."""
from __future__ import annotations

from collections import Counter
from urllib.parse import parse_qsl

from flask import Flask, Response, current_app, request

from service import scopes
from service.outcome import error

FORM = "application/x-www-form-urlencoded"


def _parameters() -> list[tuple[str, str]]:
    pairs = list(request.args.items(multi=True))
    if request.method == "POST" and request.mimetype == FORM:
        # cache=True: the handler reads the same body again (service/resources.py search_post).
        pairs += parse_qsl(request.get_data(cache=True, as_text=True), keep_blank_values=True)
    return pairs


def check() -> Response | None:
    if scopes.is_public(request.path):
        return None
    limit = int(current_app.config["MAX_URL_BYTES"])
    length = len(request.path.encode("utf-8")) + len(request.query_string) + 1
    if length > limit:
        return error(414, f"the URL is {length} bytes long; the limit is {limit}", "too-long")
    most = int(current_app.config["MAX_PARAMETER_VALUES"])
    counts: Counter[str] = Counter()
    for name, value in _parameters():
        counts[name] += value.count(",") + 1
    for name, count in counts.items():
        if count > most:
            return error(400, f"parameter {name!r} has {count} values; at most {most} are accepted in one request",
                         "too-costly", f"?{name}")
    return None


def install(app: Flask) -> None:
    app.before_request(check)

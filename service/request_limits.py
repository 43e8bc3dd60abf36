"""Bounds on the work one request line can ask for, checked before any handler runs: the URL length (414) and
the number of values of one search parameter, repeated or comma-separated, in the query and in a POST _search
form body together (400). A search over 20,000 codes used to take 84 s; the store's indexes make each value
cheap, these caps keep the count small."""
from __future__ import annotations

from collections import Counter
from urllib.parse import parse_qsl

from flask import Flask, Request, Response

from service import scopes
from service.outcome import error

FORM = "application/x-www-form-urlencoded"


def check(app: Flask, request: Request) -> Response | None:
    """Before every handler (service/__init__.py): the 414 or 400 refusal, or None."""
    path = request.path
    if scopes.is_public(path):
        return None
    limit = int(app.config["MAX_URL_BYTES"])
    query = request.query_string
    length = len(path.encode("utf-8")) + len(query) + 1
    if length > limit:
        return error(414, f"the URL is {length} bytes long; the limit is {limit}", "too-long")
    form = request.method == "POST" and request.mimetype == FORM
    if not query and not form:
        return None  # no parameter at all (most reads): nothing to count
    pairs = list(request.args.items(multi=True))
    if form:
        # cache=True: the handler reads the same body again (service/resources.py search_post).
        pairs += parse_qsl(request.get_data(cache=True, as_text=True), keep_blank_values=True)
    most = int(app.config["MAX_PARAMETER_VALUES"])
    counts: Counter[str] = Counter()
    for name, value in pairs:
        counts[name] += value.count(",") + 1
    for name, count in counts.items():
        if count > most:
            return error(400, f"parameter {name!r} has {count} values; at most {most} are accepted in one request",
                         "too-costly", f"?{name}")
    return None

"""Reads a JSON request body, turning every way it can be wrong into a typed input error."""
from __future__ import annotations

import json
import re
from itertools import accumulate

from flask import request

from mappings.errors import InputError, Issue

JSON_TYPES = ("application/json", "application/fhir+json")
# Deepest nesting accepted in a body. The seed Bundles nest 12 levels; every reader downstream (validation,
# mapping, the store) walks bodies recursively, so depth is bounded once, here, before any of them runs.
MAX_DEPTH = 64
# For `_text_depth`: every byte but brackets and quotes (deleted), the strings left then, and brackets as +1/-1
# (0xff is -1 as a signed byte).
NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'[]{}"')
STRING = re.compile(rb'"[^"]*"')
STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")


def _too_deep(value: object, limit: int = MAX_DEPTH) -> bool:
    """True when containers nest deeper than `limit`. Level by level (iterative: a deep body must not exhaust the
    stack here), each level's child containers gathered by one comprehension per container: 40% less than a
    stack of (node, depth) pairs on a Bundle. Asked only when the body's text nests deeper (`_text_depth`)."""
    level = [value] if isinstance(value, (dict, list)) else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        below: list = []
        for node in level:
            below += [c for c in (node.values() if isinstance(node, dict) else node) if isinstance(c, (dict, list))]
        level = below
    return False


def _text_depth(raw: bytes) -> int:
    """The deepest bracket nesting of a JSON text json.loads has read, by C-speed passes over the bytes (a quarter
    of the `_too_deep` walk's time on a Bundle, bench/ingest.py): escaped backslashes and quotes dropped (outside
    strings valid JSON has no backslash), then every byte but brackets and quotes (UTF-8 never reuses those bytes),
    then the strings (their quotes now pair up), then the brackets summed as +1/-1. That is the parsed value's
    depth, or more when json.loads kept only the last of duplicate keys: `_too_deep` then decides."""
    if b"\\" in raw:
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    structure = raw.translate(None, NOT_STRUCTURE).replace(b'""', b"")  # a string without brackets, or two joined
    if b'"' in structure:
        structure = STRING.sub(b"", structure)
    return max(accumulate(memoryview(structure.translate(STEPS)).cast("b")), default=0)


def parse_json(raw: bytes) -> object:
    """Parsed JSON of a request body; InputError 400 for bad encoding, bad JSON or nesting beyond MAX_DEPTH."""
    too_deep = InputError([Issue("$", f"the body nests deeper than {MAX_DEPTH} levels", "too-long")])
    try:
        parsed = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InputError([Issue("$", f"the body is not UTF-8 (byte {exc.start})", "structure")]) from None
    except json.JSONDecodeError as exc:
        raise InputError([Issue("$", f"the body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", "structure")]) from None
    except RecursionError:  # the C decoder recurses once per level
        raise too_deep from None
    if _text_depth(raw) > MAX_DEPTH and _too_deep(parsed):
        raise too_deep
    return parsed


def json_body() -> object:
    """The parsed body; InputError (400/415 by its issue code) for wrong media type, bad encoding or bad JSON."""
    mimetype = request.mimetype or ""
    if mimetype and mimetype not in JSON_TYPES:
        raise InputError([Issue("$", f"unsupported media type '{mimetype}': send application/json or application/fhir+json", "not-supported")], 415)
    raw = request.get_data(cache=False)
    if not raw:
        raise InputError([Issue("$", "the request body is empty", "required")])
    return parse_json(raw)

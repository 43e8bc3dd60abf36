"""service/request_body.py reads a body's nesting from its bytes (`_text_depth`) and answers exactly as the walk of
the parsed value did: strings holding brackets, quotes and escapes do not count, duplicate keys json.loads drops do
not refuse a body, and the limit is where it was."""
from __future__ import annotations

import json
import random

import pytest

from mappings.errors import InputError
from service.request_body import MAX_DEPTH, _text_depth, _too_deep, parse_json

TRICKY_STRINGS = ["[", "]", "{", "}", "[[{{", '"', '\\', '\\"', '"[', '\\]', '\\\\', '\\\\"', "\\n[", "\u005b", "é[", "\u2028{",
                  "\\u005b", "", " ", "]]]]}}}}", "a\"b\\c[d{e", "\\" * 5 + '"', "\U0001F600["]


def _depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _random_value(rng: random.Random, depth: int) -> object:
    roll = rng.random()
    if depth <= 0 or roll < 0.3:
        return rng.choice([rng.choice(TRICKY_STRINGS), rng.randint(-5, 5), 1.5, True, None, "plain"])
    if roll < 0.65:
        return [_random_value(rng, depth - rng.randint(1, 3)) for _ in range(rng.randint(0, 4))]
    return {rng.choice(TRICKY_STRINGS) + str(i): _random_value(rng, depth - rng.randint(1, 3)) for i in range(rng.randint(0, 4))}


@pytest.mark.parametrize("seed", range(40))
def test_the_text_depth_is_the_parsed_values_depth_whatever_the_strings_hold(seed):
    rng = random.Random(seed)
    for _ in range(50):
        value = _random_value(rng, rng.randint(0, 12))
        for text in (json.dumps(value), json.dumps(value, ensure_ascii=False), json.dumps(value, indent=1)):
            raw = text.encode("utf-8")
            assert _text_depth(raw) == _depth(json.loads(raw)), text


def _nested(levels: int, leaf: object = "x") -> object:
    value = leaf
    for n in range(levels):
        value = [value] if n % 2 else {"k[": value, "s": '"]}\\'}
    return value


@pytest.mark.parametrize("leaf", ["x", "[[[[{{{{", '\\"[', "\\\\", 5, None])
def test_the_limit_is_where_it_was(leaf):
    at_limit, beyond = json.dumps(_nested(MAX_DEPTH, leaf)).encode(), json.dumps(_nested(MAX_DEPTH + 1, leaf)).encode()
    assert parse_json(at_limit) == json.loads(at_limit) and not _too_deep(json.loads(at_limit))
    with pytest.raises(InputError) as refused:
        parse_json(beyond)
    assert refused.value.issues[0].code == "too-long" and _too_deep(json.loads(beyond))


def test_a_deep_value_json_loads_drops_for_a_duplicate_key_does_not_refuse_the_body():
    deep = json.dumps(_nested(MAX_DEPTH + 5))
    raw = ('{"a": ' + deep + ', "a": 1}').encode()
    assert _text_depth(raw) > MAX_DEPTH
    assert parse_json(raw) == {"a": 1}


def test_scalars_and_empty_containers():
    assert [_text_depth(raw) for raw in (b'"[["', b"5", b"null", b"[]", b"{}", b'[{"a": []}]')] == [0, 0, 0, 1, 1, 3]

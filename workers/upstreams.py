"""Upstream FHIR servers from the environment: SYNC_UPSTREAMS (JSON list) or SYNC_UPSTREAM_URL (+ _TOKEN).

Secrets never appear in the configuration itself: an auth block names the environment variables that hold
them (token_env, private_key_env), and a literal secret in the JSON is refused.

`export` says how an all-patients pull asks for a Bulk Data export (workers/bulk_pull.py) when the upstream's
CapabilityStatement offers one: `patient` (Patient/$export, the default), `system` ($export), `group:<id>`
(Group/<id>/$export) or `off` (always paged search).
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from workers.errors import ConfigError, UnknownUpstream

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
AUTH_TYPES = ("none", "bearer", "smart-backend")
SECRET_KEYS = ("token", "private_key", "client_secret", "password")
SHORTCUT_NAME = "default"
EXPORT_LEVELS = ("patient", "system", "off")
GROUP_EXPORT = re.compile(r"^group:([A-Za-z0-9\-.]{1,64})$")


@dataclass(frozen=True)
class Upstream:
    name: str
    base_url: str
    auth: dict = field(default_factory=lambda: {"type": "none"})
    export: str = "patient"


def load_upstreams(environ: Mapping[str, str] | None = None) -> dict[str, Upstream]:
    """name -> Upstream; empty when nothing is configured. Raises ConfigError for unusable settings."""
    environ = os.environ if environ is None else environ
    if environ.get("SYNC_UPSTREAMS"):
        return _from_json(environ["SYNC_UPSTREAMS"])
    if environ.get("SYNC_UPSTREAM_URL"):
        # The shortcut keeps its token in SYNC_UPSTREAM_TOKEN, read when a request is made.
        auth = {"type": "bearer", "token_env": "SYNC_UPSTREAM_TOKEN"} if environ.get("SYNC_UPSTREAM_TOKEN") else {"type": "none"}
        export = _export(environ.get("SYNC_UPSTREAM_EXPORT") or "patient", "SYNC_UPSTREAM_EXPORT")
        return {SHORTCUT_NAME: Upstream(SHORTCUT_NAME, _base_url(environ["SYNC_UPSTREAM_URL"], SHORTCUT_NAME), auth, export)}
    return {}


def resolve(name: str | None, environ: Mapping[str, str] | None = None) -> Upstream:
    """The upstream called `name`; without a name, the only one configured."""
    upstreams = load_upstreams(environ)
    if not upstreams:
        raise UnknownUpstream("no upstream is configured (set SYNC_UPSTREAMS or SYNC_UPSTREAM_URL)")
    if name is None:
        if len(upstreams) > 1:
            raise UnknownUpstream(f"several upstreams are configured ({', '.join(sorted(upstreams))}); name one")
        return next(iter(upstreams.values()))
    if name not in upstreams:
        raise UnknownUpstream(f"unknown upstream {name!r} (configured: {', '.join(sorted(upstreams))})")
    return upstreams[name]


def _from_json(raw: str) -> dict[str, Upstream]:
    try:
        items = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"SYNC_UPSTREAMS is not JSON: {exc.msg}") from None
    if not isinstance(items, list) or not items:
        raise ConfigError("SYNC_UPSTREAMS must be a non-empty JSON list of {name, base_url, auth}")
    result: dict[str, Upstream] = {}
    for i, item in enumerate(items):
        upstream = _one(item, f"SYNC_UPSTREAMS[{i}]")
        if upstream.name in result:
            raise ConfigError(f"SYNC_UPSTREAMS[{i}]: duplicate name {upstream.name!r}")
        result[upstream.name] = upstream
    return result


def _one(item: object, where: str) -> Upstream:
    if not isinstance(item, dict):
        raise ConfigError(f"{where} must be an object")
    name = item.get("name")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ConfigError(f"{where}.name must match {NAME_PATTERN.pattern}")
    auth = item.get("auth") or {"type": "none"}
    _check_auth(auth, f"{where}.auth")
    return Upstream(name, _base_url(item.get("base_url"), where), dict(auth),
                    _export(item.get("export", "patient"), f"{where}.export"))


def _export(value: object, where: str) -> str:
    if not isinstance(value, str) or not (value in EXPORT_LEVELS or GROUP_EXPORT.match(value)):
        raise ConfigError(f"{where} must be one of {', '.join(EXPORT_LEVELS)} or group:<id>")
    return value


def _base_url(value: object, where: str) -> str:
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise ConfigError(f"{where}: base_url must be an http(s) URL")
    return value.rstrip("/")


def _check_auth(auth: object, where: str) -> None:
    if not isinstance(auth, dict) or auth.get("type", "none") not in AUTH_TYPES:
        raise ConfigError(f"{where}.type must be one of {', '.join(AUTH_TYPES)}")
    leaked = [k for k in SECRET_KEYS if k in auth]
    if leaked:
        raise ConfigError(f"{where}: secrets come from the environment only; use token_env / private_key_env, not {leaked[0]!r}")
    kind = auth.get("type", "none")
    if kind == "bearer" and not auth.get("token_env"):
        raise ConfigError(f"{where}: bearer auth needs token_env")
    if kind == "smart-backend":
        for key in ("client_id", "private_key_env"):
            if not auth.get(key):
                raise ConfigError(f"{where}: smart-backend auth needs {key}")
        if auth.get("alg", "RS384") not in ("RS384", "ES384"):
            raise ConfigError(f"{where}.alg must be RS384 or ES384")

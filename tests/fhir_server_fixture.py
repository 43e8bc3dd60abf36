"""pytest fixtures for a real FHIR R4 server (sekmet-fhir on loopback), built on localfhir/server.py.

Enable in ``tests/conftest.py`` with either::

    pytest_plugins = ["fhir_server_fixture"]      # tests/ is on sys.path (pytest's default rootdir conftest import)
    # or
    from fhir_server_fixture import *  # noqa: F401,F403

Fixtures:
  * ``fhir_server`` (session): a :class:`FhirTestServer` with ``.base_url``.  Starts one sekmet server per test
    session (first use installs it into its own venv, ~15 s once), or, when ``FHIR_BASE_URL`` is set, uses that
    server instead (``FHIR_TOKEN`` then supplies a bearer token for it).
  * ``fhir_isolated`` (function): wipes the local server's database before the test (a few ms) and yields a
    :class:`FhirTestContext` with the same ``.base_url`` plus a per-test tag / identifier system.  Against an
    external ``FHIR_BASE_URL`` nothing is wiped (``.wiped`` is False); tests stay isolated by using
    ``ctx.identifier_system`` for identifiers and ``ctx.tagged(resource)`` / ``ctx.tag_query`` in searches.
  * ``fhir_server_factory`` (session): start extra private servers, e.g. ``fhir_server_factory(tokens=["t"])``
    for bearer-auth tests or ``extra_settings={"validation": {"inbound": "off"}}``; all stopped at session end.

Env: ``FHIR_BASE_URL`` (use an external server), ``FHIR_TOKEN`` (bearer token; for the local session server it also
turns on bearer auth), ``SEKMET_VENV`` (where sekmet is installed; default ``<repo>/.venv-sekmet``).
"""
from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import pytest

from localfhir import server as local_fhir

fhir_server_mod = local_fhir
ServerHandle = fhir_server_mod.ServerHandle


@dataclass
class FhirResponse:
    """Minimal HTTP answer: status, lower-cased headers, parsed JSON body (None when empty)."""

    status: int
    headers: dict[str, str]
    body: Any


@dataclass
class FhirTestServer:
    """A FHIR server for tests: local sekmet (``handle`` set) or external (``FHIR_BASE_URL``)."""

    base_url: str
    token: str | None = None
    handle: ServerHandle | None = None

    @property
    def external(self) -> bool:
        return self.handle is None

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def reset(self) -> bool:
        """Wipe all data if the server is ours; return False (nothing done) for an external server."""
        if self.handle is None:
            return False
        fhir_server_mod.reset_db(self.handle.db_path)
        return True

    def url(self, path: str = "") -> str:
        """Absolute URL for ``path`` relative to the base (absolute URLs pass through)."""
        if path.startswith(("http://", "https://")):
            return path
        return self.base_url.rstrip("/") + ("/" + path.lstrip("/") if path else "")

    def request(self, method: str, path: str = "", body: Any = None, headers: dict[str, str] | None = None,
                timeout: float = 30.0) -> FhirResponse:
        """Stdlib JSON request helper (no raise on 4xx/5xx)."""
        h = {"Accept": "application/fhir+json", **self.auth_headers()}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/fhir+json"
        h.update(headers or {})
        req = urllib.request.Request(self.url(path), data=data, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                status, hdrs, raw = r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            status, hdrs, raw = e.code, e.headers, e.read()
        parsed = json.loads(raw) if raw and raw.strip() else None
        return FhirResponse(status, {k.lower(): v for k, v in hdrs.items()}, parsed)


@dataclass
class FhirTestContext:
    """Per-test view of the server: wiped when local, tag/identifier-isolated always."""

    server: FhirTestServer
    run_id: str
    wiped: bool
    tag: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.tag = {"system": "urn:test-run", "code": self.run_id}

    @property
    def base_url(self) -> str:
        return self.server.base_url

    @property
    def identifier_system(self) -> str:
        """A system unique to this test, for identifiers that must not collide with other tests' data."""
        return f"urn:test:{self.run_id}"

    @property
    def tag_query(self) -> str:
        """Search parameter restricting results to resources made by this test via :meth:`tagged`."""
        return f"_tag={self.tag['system']}|{self.tag['code']}"

    def tagged(self, resource: dict) -> dict:
        """Return a copy of ``resource`` with this test's meta.tag added."""
        res = json.loads(json.dumps(resource))
        meta = res.setdefault("meta", {})
        meta["tag"] = [*meta.get("tag", []), dict(self.tag)]
        return res

    def request(self, method: str, path: str = "", body: Any = None,
                headers: dict[str, str] | None = None) -> FhirResponse:
        return self.server.request(method, path, body, headers)


@pytest.fixture(scope="session")
def fhir_server() -> Iterator[FhirTestServer]:
    """One FHIR server for the whole session (external when FHIR_BASE_URL is set)."""
    token = os.environ.get("FHIR_TOKEN") or None
    external = os.environ.get("FHIR_BASE_URL")
    if external:
        base = external.rstrip("/")
        fhir_server_mod.wait_ready(base, timeout=30)
        yield FhirTestServer(base_url=base, token=token)
        return
    handle = fhir_server_mod.start(tokens=[token] if token else None)
    try:
        yield FhirTestServer(base_url=handle.base_url, token=token, handle=handle)
    finally:
        fhir_server_mod.stop(handle)


@pytest.fixture
def fhir_isolated(fhir_server: FhirTestServer, request: pytest.FixtureRequest) -> FhirTestContext:
    """Per test: wipe the local server's data first; always provide a unique tag and identifier system."""
    wiped = fhir_server.reset()
    return FhirTestContext(server=fhir_server, run_id=uuid.uuid4().hex[:16], wiped=wiped)


@pytest.fixture(scope="session")
def fhir_server_factory() -> Iterator[Callable[..., FhirTestServer]]:
    """Start additional private sekmet servers: ``factory(tokens=None, extra_settings=None)``."""
    handles: list[ServerHandle] = []

    def make(tokens: list[str] | None = None, extra_settings: dict | None = None) -> FhirTestServer:
        h = fhir_server_mod.start(tokens=tokens, extra_settings=extra_settings)
        handles.append(h)
        return FhirTestServer(base_url=h.base_url, token=(tokens or [None])[0], handle=h)

    try:
        yield make
    finally:
        for h in handles:
            fhir_server_mod.stop(h)

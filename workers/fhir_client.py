"""The one HTTP client for every upstream call: timeouts, retries with backoff, Retry-After, paging, auth.

Logs carry the upstream name, method, resource type and status only: never query strings (identifier values
are patient data) and never bodies.
"""
from __future__ import annotations

import datetime as dt
import email.utils
import logging
import random
import time
from dataclasses import dataclass
from typing import Callable, Iterator
from urllib.parse import urljoin, urlsplit

import requests

from workers import defaults
from workers.auth import make_auth
from workers.errors import AuthFailed, UpstreamRejected, UpstreamUnavailable
from workers.upstreams import Upstream

log = logging.getLogger("workers.fhir_client")
RETRYABLE_STATUS = {408, 429, 500, 502, 503, 504}
FHIR_JSON = "application/fhir+json"


@dataclass(frozen=True)
class ClientSettings:
    connect_timeout: float
    read_timeout: float
    attempts: int
    backoff: float
    backoff_cap: float
    retry_after_cap: float

    @classmethod
    def from_environment(cls) -> "ClientSettings":
        s = defaults.setting
        return cls(s("SYNC_CONNECT_TIMEOUT"), s("SYNC_READ_TIMEOUT"), max(1, s("SYNC_HTTP_ATTEMPTS")),
                   s("SYNC_BACKOFF_SECONDS"), s("SYNC_BACKOFF_CAP_SECONDS"), s("SYNC_RETRY_AFTER_CAP_SECONDS"))


class FhirClient:
    """JSON calls to one upstream; `requests_made` counts every HTTP attempt (for tests and job results)."""

    def __init__(self, upstream: Upstream, settings: ClientSettings | None = None,
                 session: requests.Session | None = None, sleep: Callable[[float], None] = time.sleep):
        self.upstream = upstream
        self.base_url = upstream.base_url
        self.settings = settings or ClientSettings.from_environment()
        self.session = session or requests.Session()
        self.auth = make_auth(upstream)
        self.sleep = sleep
        self.requests_made = 0
        self.errors_seen = 0  # failed attempts (connection errors, 408/429/5xx), for the upstream-errors metric

    @property
    def timeout(self) -> tuple[float, float]:
        return (self.settings.connect_timeout, self.settings.read_timeout)

    def url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else f"{self.base_url}/{path.lstrip('/')}"

    def get(self, path: str, params: dict | None = None) -> dict:
        return self._json(self.send("GET", self.url(path), params=params))

    def transaction(self, bundle: dict) -> dict:
        """POST a transaction or batch Bundle to the base; the response Bundle."""
        return self._json(self.send("POST", self.base_url, body=bundle))

    def pages(self, path: str, params: dict | None = None) -> Iterator[dict]:
        """Every searchset page, following `next` links exactly as the server gave them."""
        page = self.get(path, params)
        while True:
            yield page
            following = next((l["url"] for l in page.get("link", []) if l.get("relation") == "next"), None)
            if not following or not page.get("entry"):
                return
            page = self.get(urljoin(self.base_url + "/", following))

    def send(self, method: str, url: str, params: dict | None = None, body: dict | None = None) -> requests.Response:
        """One call with retries on connection errors, 408, 429 and 5xx, and one token refresh on 401."""
        refreshed, attempt, reason = False, 0, ""
        while attempt < self.settings.attempts:
            wait, answer = None, None
            try:
                answer = self._once(method, url, params, body)
            except (requests.ConnectionError, requests.Timeout) as exc:
                reason, wait = type(exc).__name__, self._backoff(attempt)
            if answer is not None:
                if answer.status_code == 401 and not refreshed:
                    refreshed = True
                    self.auth.refresh()
                    continue  # a refresh is not an attempt: the token, not the server, was the problem
                if answer.status_code not in RETRYABLE_STATUS:
                    return self._checked(answer, method, url)
                reason, wait = f"HTTP {answer.status_code}", self._retry_after(answer) or self._backoff(attempt)
            attempt += 1
            self.errors_seen += 1
            if attempt < self.settings.attempts:
                log.warning("%s %s %s: %s; retrying in %.1fs", self.upstream.name, method, _rtype(url), reason, wait)
                self.sleep(wait)
        raise UpstreamUnavailable(f"upstream {self.upstream.name!r} {method} {_rtype(url)}: {reason} "
                                  f"after {self.settings.attempts} attempts")

    def _once(self, method: str, url: str, params: dict | None, body: dict | None) -> requests.Response:
        headers = {"Accept": FHIR_JSON, **self.auth.headers(self.session, self.timeout)}
        if body is not None:
            headers["Content-Type"] = FHIR_JSON
        self.requests_made += 1
        answer = self.session.request(method, url, params=params, json=body, headers=headers, timeout=self.timeout)
        log.debug("%s %s %s -> %s", self.upstream.name, method, _rtype(url), answer.status_code)
        return answer

    def _checked(self, answer: requests.Response, method: str, url: str) -> requests.Response:
        if answer.status_code < 400:
            return answer
        if answer.status_code == 401:
            raise AuthFailed(f"upstream {self.upstream.name!r} refused our credentials (401) after a token refresh")
        outcome = _outcome(answer)
        raise UpstreamRejected(f"upstream {self.upstream.name!r} {method} {_rtype(url)}: HTTP {answer.status_code}: "
                               f"{_diagnostics(outcome)}", answer.status_code, outcome)

    def _backoff(self, attempt: int) -> float:
        # Jitter spreads the retries of several workers that failed together.
        delay = min(self.settings.backoff_cap, self.settings.backoff * (2 ** attempt))
        return delay * random.uniform(0.8, 1.2)

    def _retry_after(self, answer: requests.Response) -> float | None:
        seconds = retry_after_seconds(answer.headers.get("Retry-After"))
        return None if seconds is None else min(seconds, self.settings.retry_after_cap)

    @staticmethod
    def _json(answer: requests.Response) -> dict:
        return answer.json() if answer.content else {}


def retry_after_seconds(value: str | None, now: dt.datetime | None = None) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP-date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return max(0.0, (when - (now or dt.datetime.now(dt.timezone.utc))).total_seconds())


def _rtype(url: str) -> str:
    """The resource type (or '(base)') a URL addresses: what our logs may show."""
    segments = [s for s in urlsplit(url).path.split("/") if s]
    types = [s for s in segments if s[:1].isupper() or s.startswith(("$", "_"))]
    return types[0] if types else "(base)"


def _outcome(answer: requests.Response) -> dict | None:
    try:
        body = answer.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome" else None


def _diagnostics(outcome: dict | None) -> str:
    """Issue codes only: diagnostics may quote identifier values, and this text reaches logs and job results."""
    if not outcome:
        return "no OperationOutcome"
    return ", ".join(i.get("code", "?") for i in outcome.get("issue", []))

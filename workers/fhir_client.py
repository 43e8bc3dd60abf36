"""The one HTTP client for every upstream call: timeouts, retries with backoff, Retry-After, paging, auth.

Retries are urllib3's (`urllib3.util.Retry` on the session's adapters): connection errors, timeouts, 408, 429
and 5xx, with exponential backoff and jitter or the server's `Retry-After` (capped); a 401 refreshes the token
once and sends again. Logs carry the upstream name, method, resource type and status only: never query strings
(identifier values are patient data) and never bodies.
"""
from __future__ import annotations

import datetime as dt
import email.utils
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from workers import defaults
from workers.auth import make_auth
from workers.errors import AuthFailed, UpstreamRejected, UpstreamUnavailable
from workers.upstreams import Upstream

log = logging.getLogger("workers.fhir_client")
# urllib3 logs each retry with the URL, query string included (identifier values are patient data); ours are
# logged by _Retry.sleep with the resource type only.
logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
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
    def from_environment(cls) -> ClientSettings:
        s = defaults.setting
        return cls(s("SYNC_CONNECT_TIMEOUT"), s("SYNC_READ_TIMEOUT"), max(1, s("SYNC_HTTP_ATTEMPTS")),
                   s("SYNC_BACKOFF_SECONDS"), s("SYNC_BACKOFF_CAP_SECONDS"), s("SYNC_RETRY_AFTER_CAP_SECONDS"))


class _Attempts:
    """What the client's Retry reports back: failed attempts (for requests_made and the errors metric), and the
    waits, slept through the client's sleep function (tests record them) and logged without query strings."""

    def __init__(self, upstream: str, retry_after_cap: float, sleep: Callable[[float], None]):
        self.upstream, self.retry_after_cap, self.sleep = upstream, retry_after_cap, sleep
        self.failures = 0


class _Retry(Retry):
    """urllib3's Retry with the client's Retry-After cap, sleep and accounting. 413 is not retried even with a
    Retry-After: a body too large stays too large."""

    RETRY_AFTER_STATUS_CODES = frozenset({429, 503})
    attempts: _Attempts | None = None

    def new(self, **kw) -> _Retry:
        fresh = super().new(**kw)  # urllib3 copies a Retry for every attempt; the accounting follows it
        fresh.attempts = self.attempts
        return fresh

    def increment(self, method=None, url=None, response=None, error=None, _pool=None, _stacktrace=None) -> _Retry:
        if self.attempts is not None:
            self.attempts.failures += 1
        return super().increment(method, url, response, error, _pool, _stacktrace)

    def get_retry_after(self, response) -> float | None:
        seconds = retry_after_seconds(response.headers.get("Retry-After"))
        cap = self.attempts.retry_after_cap if self.attempts else float("inf")
        return None if seconds is None else min(seconds, cap)

    def sleep(self, response=None) -> None:
        wait = (self.get_retry_after(response) if response is not None else None) or self.get_backoff_time()
        if self.attempts is None:
            time.sleep(wait)
            return
        if self.history:
            last = self.history[-1]
            reason = f"HTTP {last.status}" if last.status else type(last.error).__name__
            log.warning("%s %s %s: %s; retrying in %.1fs", self.attempts.upstream, last.method, _rtype(last.url or ""),
                        reason, wait)
        self.attempts.sleep(wait)


def retrying_session(settings: ClientSettings, attempts: _Attempts, session: requests.Session | None = None) -> requests.Session:
    """A requests session whose every call is retried by urllib3 as the settings say (any method: our writes are
    conditional PUTs in transactions, which are safe to repeat)."""
    retry = _Retry(total=settings.attempts - 1, status_forcelist=RETRYABLE_STATUS, allowed_methods=None,
                   backoff_factor=settings.backoff, backoff_max=settings.backoff_cap,
                   backoff_jitter=settings.backoff,  # spreads the retries of several workers that failed together
                   respect_retry_after_header=True, raise_on_status=False, raise_on_redirect=False)
    retry.attempts = attempts
    session = session or requests.Session()
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


class FhirClient:
    """JSON calls to one upstream; `requests_made` counts every HTTP attempt (for tests and job results)."""

    def __init__(self, upstream: Upstream, settings: ClientSettings | None = None,
                 session: requests.Session | None = None, sleep: Callable[[float], None] = time.sleep):
        self.upstream = upstream
        self.base_url = upstream.base_url
        self.settings = settings or ClientSettings.from_environment()
        self.sleep = sleep
        self._attempts = _Attempts(upstream.name, self.settings.retry_after_cap, sleep)
        self.session = retrying_session(self.settings, self._attempts, session)
        self.auth = make_auth(upstream)
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

    def send(self, method: str, url: str, params: dict | None = None, body: dict | None = None,
             headers: dict[str, str] | None = None, stream: bool = False, credentials: bool = True) -> requests.Response:
        """One call, retried by the session on connection errors, 408, 429 and 5xx; one token refresh on 401.
        Answers below 400 are returned (202 included); 4xx raise UpstreamRejected, exhausted retries
        UpstreamUnavailable. `stream` leaves the body unread (NDJSON downloads); `credentials=False` sends no
        Authorization (files whose manifest says they need no access token, maybe on other hosts)."""
        answer = self._attempt(method, url, params, body, headers, stream, credentials)
        if answer.status_code == 401 and credentials:
            answer.close()
            self.auth.refresh()  # a refresh is not an attempt: the token, not the server, was the problem
            answer = self._attempt(method, url, params, body, headers, stream, credentials)
        if answer.status_code in RETRYABLE_STATUS:
            codes = _diagnostics(_outcome(answer)) if answer.content else "no OperationOutcome"
            answer.close()
            raise UpstreamUnavailable(f"upstream {self.upstream.name!r} {method} {_rtype(url)}: HTTP {answer.status_code} "
                                      f"after {self.settings.attempts} attempts ({codes})")
        return self._checked(answer, method, url)

    def _attempt(self, method: str, url: str, params: dict | None, body: dict | None, headers: dict[str, str] | None,
                 stream: bool, credentials: bool) -> requests.Response:
        """session.request with the accounting of its attempts (urllib3 makes several inside one call)."""
        self._attempts.failures = 0
        try:
            answer = self._once(method, url, params, body, headers, stream, credentials)
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.RetryError) as exc:
            self._account(self._attempts.failures, max(1, self._attempts.failures))
            raise UpstreamUnavailable(f"upstream {self.upstream.name!r} {method} {_rtype(url)}: {type(exc).__name__} "
                                      f"after {self.settings.attempts} attempts") from None
        # The last answer was itself a failure when it is still retryable (the retries ran out on it).
        failures = self._attempts.failures
        self._account(failures, failures + (0 if answer.status_code in RETRYABLE_STATUS else 1))
        return answer

    def _account(self, failures: int, attempts: int) -> None:
        self.errors_seen += failures
        self.requests_made += attempts

    def _once(self, method: str, url: str, params: dict | None, body: dict | None, extra: dict[str, str] | None,
              stream: bool, credentials: bool) -> requests.Response:
        headers = {"Accept": FHIR_JSON, **(self.auth.headers(self.session, self.timeout) if credentials else {}),
                   **(extra or {})}
        if body is not None:
            headers["Content-Type"] = FHIR_JSON
        answer = self.session.request(method, url, params=params, json=body, headers=headers, timeout=self.timeout,
                                      stream=stream)
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
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - (now or dt.datetime.now(dt.UTC))).total_seconds())


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

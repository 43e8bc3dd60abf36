"""Shared pieces of the fault tests (no tests here): a write load that retries until acknowledged, as an EHR
would, and records every answer, so that a test can check what was acknowledged against what the store holds."""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field

import requests
from gateway_setup import TEST_API_KEY

IDENTIFIER_SYSTEM = "urn:fault-test"


def session() -> requests.Session:
    s = requests.Session()
    s.headers.update({"X-API-Key": TEST_API_KEY, "Content-Type": "application/fhir+json"})
    return s


def patient_bundle(pid: str) -> dict:
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "id": pid}, "request": {"method": "PUT", "url": f"Patient/{pid}"}}]}


def observation_bundle(pid: str, n: int) -> dict:
    """One lab as a conditional PUT on its identifier: sending it again after a lost answer changes nothing."""
    return {"resourceType": "Bundle", "type": "transaction", "entry": [{
        "resource": {"resourceType": "Observation", "status": "final", "code": {"text": f"lab {n}"},
                     "identifier": [{"system": IDENTIFIER_SYSTEM, "value": f"{pid}-{n}"}],
                     "subject": {"reference": f"Patient/{pid}"}},
        "request": {"method": "PUT", "url": f"Observation?identifier={IDENTIFIER_SYSTEM}|{pid}-{n}"}}]}


@dataclass
class Answer:
    at: float                # time.monotonic() when the answer arrived
    status: int | str        # HTTP status, or "connection-error"
    body: dict | None = None
    retry_after: str | None = None


@dataclass
class WriteLoad:
    """`total` labs for one patient sent by `clients` threads, each write retried until the gateway answers 200."""

    base: str
    pid: str
    total: int
    clients: int = 3
    pause: float = 0.02
    answers: list[Answer] = field(default_factory=list)
    acknowledged: list[int] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _note(self, answer: Answer) -> None:
        with self._lock:
            self.answers.append(answer)

    def _send(self, s: requests.Session, n: int) -> None:
        while True:
            try:
                response = s.post(f"{self.base}/Bundle", data=json.dumps(observation_bundle(self.pid, n)), timeout=30)
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError):
                # Lost before an answer, or in the middle of one (a process killed between the headers and the
                # body): the write may or may not be applied, so it is sent again, as a client would.
                self._note(Answer(time.monotonic(), "connection-error"))
                time.sleep(0.1)
                continue
            self._note(Answer(time.monotonic(), response.status_code, _json(response), response.headers.get("Retry-After")))
            if response.status_code == 200:
                with self._lock:
                    self.acknowledged.append(n)
                return
            time.sleep(0.1)

    def _client(self, index: int) -> None:
        s = session()
        for n in range(index, self.total, self.clients):
            self._send(s, n)
            time.sleep(self.pause)

    def run(self) -> None:
        threads = [threading.Thread(target=self._client, args=(i,)) for i in range(self.clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def not_ok(self) -> list[Answer]:
        return [a for a in self.answers if a.status != 200]


def _json(response: requests.Response) -> dict | None:
    try:
        return response.json()
    except ValueError:
        return None


def is_transient_outcome(answer: Answer) -> bool:
    """A 503 OperationOutcome with Retry-After: the only acceptable answer while a store is down."""
    return (answer.status == 503 and answer.retry_after is not None and answer.body is not None
            and answer.body.get("resourceType") == "OperationOutcome")

"""A fault-injecting HTTP proxy on loopback in front of a real FHIR server, for tests.

It forwards every request, rewrites the server's base URL in answers (so `next` links and Locations come
back through the proxy), counts requests, and on demand answers with canned faults (e.g. 429 + Retry-After,
503), delays each request, or drops connections as if the server were down.
"""
from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "accept-encoding"}


@dataclass
class Fault:
    status: int
    headers: dict[str, str]
    body: bytes = b'{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"throttled"}]}'


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        pass  # a client killed mid-request (the SIGKILL test) is expected here, not an error to print


class FaultProxy:
    def __init__(self, target_base: str):
        self.target_base = target_base.rstrip("/")
        self.faults: list[Fault] = []
        self.delay = 0.0
        self.down = False
        self.drop_after_forward = 0  # next N requests reach the server, but the answer is lost (connection cut)
        self.slow_next: list[float] = []  # seconds to stall each of the next requests before forwarding
        self.log: list[tuple[float, str, str, int]] = []  # (time, method, path without query, status)
        self._lock = threading.Lock()
        self._server = _QuietServer(("127.0.0.1", 0), self._handler())
        prefix = urlsplit(self.target_base).path
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}{prefix}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "FaultProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def fail_next(self, count: int, status: int, headers: dict[str, str] | None = None) -> None:
        with self._lock:
            self.faults += [Fault(status, headers or {}) for _ in range(count)]

    def count(self, method: str | None = None, contains: str = "") -> int:
        return sum(1 for _, m, p, _ in self.log if method in (None, m) and contains in p)

    def reset_log(self) -> None:
        with self._lock:
            self.log.clear()

    def _next_fault(self) -> Fault | None:
        with self._lock:
            return self.faults.pop(0) if self.faults else None

    def _record(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self.log.append((time.time(), method, path.split("?")[0], status))

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if proxy.down:
                    self.close_connection = True
                    self.connection.shutdown(2)  # as if nothing listened: the client sees a connection error
                    return
                if proxy.delay:
                    time.sleep(proxy.delay)
                with proxy._lock:
                    stall = proxy.slow_next.pop(0) if proxy.slow_next else 0.0
                if stall:
                    time.sleep(stall)
                fault = proxy._next_fault()
                if fault:
                    proxy._record(self.command, self.path, fault.status)
                    return self._answer(fault.status, fault.headers, fault.body)
                status, headers, data = self._forward(body)
                with proxy._lock:
                    drop = proxy.drop_after_forward > 0
                    proxy.drop_after_forward -= int(drop)
                if drop:
                    proxy.log.append((time.time(), self.command, self.path.split("?")[0], -1))
                    self.close_connection = True
                    self.connection.shutdown(2)  # the write happened upstream; the client never hears of it
                    return
                proxy._record(self.command, self.path, status)
                self._answer(status, headers, data)

            def _forward(self, body: bytes | None):
                origin = urlsplit(proxy.target_base)
                url = f"{origin.scheme}://{origin.netloc}{self.path}"
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
                if body:
                    body = body.replace(proxy.base_url.encode(), proxy.target_base.encode())
                request = urllib.request.Request(url, data=body, method=self.command, headers=headers)
                try:
                    with urllib.request.urlopen(request, timeout=60) as answer:
                        status, got, data = answer.status, answer.headers, answer.read()
                except urllib.error.HTTPError as exc:
                    status, got, data = exc.code, exc.headers, exc.read()
                rewritten = {k: v.replace(proxy.target_base, proxy.base_url) for k, v in got.items()
                             if k.lower() not in HOP_HEADERS}
                return status, rewritten, data.replace(proxy.target_base.encode(), proxy.base_url.encode())

            def _answer(self, status: int, headers: dict[str, str], data: bytes) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _any

        return Handler

"""Prometheus metrics at /metrics (admin scope): requests and latencies per route, cache hits and misses,
queue lengths, job outcomes, upstream errors.

Request metrics live in each process (with gunicorn set PROMETHEUS_MULTIPROC_DIR to aggregate workers);
queue and job figures are read from Redis at scrape time, so every process reports the same.
"""
from __future__ import annotations

import os

import redis
from flask import Blueprint, Response, current_app
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from store import counters

REQUESTS = Counter("gateway_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram("gateway_request_seconds", "HTTP request latency", ["route"],
                    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
CACHE = Counter("gateway_patient_cache_total", "Patient view cache lookups", ["result"])
bp = Blueprint("metrics", __name__)


class QueueCollector:
    """Queue lengths and job registries from RQ, upstream errors from the workers' counters."""

    def __init__(self, client: redis.Redis):
        self.client = client

    def collect(self):
        from rq import Queue
        from rq.registry import FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry

        lengths = GaugeMetricFamily("gateway_queue_length", "Jobs waiting per queue", labels=["queue"])
        jobs = GaugeMetricFamily("gateway_jobs", "Jobs per queue and state", labels=["queue", "state"])
        errors = GaugeMetricFamily("gateway_upstream_errors", "Upstream call failures seen by workers", labels=["upstream"])
        try:
            for queue in Queue.all(connection=self.client):
                lengths.add_metric([queue.name], queue.count)
                for state, registry in (("started", StartedJobRegistry), ("finished", FinishedJobRegistry), ("failed", FailedJobRegistry)):
                    jobs.add_metric([queue.name, state], registry(queue=queue).count)
            for name, count in counters.upstream_errors(self.client).items():
                errors.add_metric([name], count)
        except redis.RedisError:
            pass
        yield from (lengths, jobs, errors)


# Label children looked up once and remembered: Metric.labels() validates, stringifies and takes a lock on every
# call. A child is created on its first use, as labels() would, so /metrics lists only series that happened.
# At most MAX_CHILDREN request label sets are remembered (the method of an unmatched request is the client's).
MAX_CHILDREN = 10_000
_cache_children: dict[bool, Counter] = {}
_request_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}


def record_cache(hit: bool) -> None:
    child = _cache_children.get(hit)
    if child is None:
        child = _cache_children[hit] = CACHE.labels("hit" if hit else "miss")
    child.inc()


def observe(method: str, route: str, status: int, seconds: float) -> None:
    """After every handler (service/__init__.py): one request of this route counted and its latency observed."""
    key = (method, route, status)
    children = _request_children.get(key)
    if children is None:
        children = (REQUESTS.labels(method, route, str(status)), LATENCY.labels(route))
        if len(_request_children) < MAX_CHILDREN:
            _request_children[key] = children
    children[0].inc()
    children[1].observe(seconds)


@bp.get("/metrics")
def metrics() -> Response:
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
    else:
        for collector in (REQUESTS, LATENCY, CACHE):
            registry.register(collector)
    registry.register(QueueCollector(current_app.extensions["redis"]))
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)

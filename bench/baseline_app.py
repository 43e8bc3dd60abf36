"""Benchmark 2 baseline: the least a Flask route can do to serve a cached bundle, one Redis GET.

Serves GET /Patient/<pid>/$everything with the bytes stored at BENCH_BODY_KEY (set by bench/gateway.py).
Run: gunicorn --pythonpath bench baseline_app:app  (env REDIS_URL, BENCH_BODY_KEY)
"""
from __future__ import annotations

import os

import redis
from flask import Flask, Response

app = Flask(__name__)
client = redis.Redis.from_url(os.environ["REDIS_URL"])
BODY_KEY = os.environ.get("BENCH_BODY_KEY", "bench:body")


@app.get("/Patient/<pid>/$everything")
def everything(pid: str) -> Response:
    return Response(client.get(BODY_KEY), mimetype="application/fhir+json")

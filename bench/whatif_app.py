"""The gateway with parts of its request pipeline changed, to price each part (bench/gateway.py --whatif).

BENCH_WHATIF is a comma list of: keycache (API keys looked up once per process, not per request),
nolimit (rate limiter off), noaudit (no audit event queued or written), noversion (the patient's existence and
version read from the database once per process, then remembered: what a cached read would cost if the version
were free; stale after a write, so never safe). A measuring aid only, never a deployment.
Run: gunicorn --pythonpath .,bench whatif_app:app
"""
from __future__ import annotations

import functools
import os

from service import auth, create_app

CHANGES = set(filter(None, os.environ.get("BENCH_WHATIF", "").split(",")))
if "keycache" in CHANGES:
    auth._verify_api_key = functools.lru_cache(maxsize=1024)(auth._verify_api_key)
app = create_app()
if "nolimit" in CHANGES:
    app.extensions["rate_limit"].enabled = False
if "noversion" in CHANGES:
    from service import patients

    patients.reads.patient_exists = functools.lru_cache(maxsize=1024)(patients.reads.patient_exists)
if "noaudit" in CHANGES:
    app.after_request_funcs[None] = [f for f in app.after_request_funcs[None]
                                     if getattr(f, "__module__", "") != "service.audit"]

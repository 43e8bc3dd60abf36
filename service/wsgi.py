"""WSGI entry point for gunicorn: `gunicorn service.wsgi:app`."""
from __future__ import annotations

from service import create_app

app = create_app()

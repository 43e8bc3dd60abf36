"""JSON log lines for every process (gateway and workers): one object per line, no PHI.

It lives below the gateway so that workers configure logging without importing Flask (service/ imports it).
"""
from __future__ import annotations

import json
import logging
import time
from typing import ClassVar


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any `extra` fields."""

    STANDARD: ClassVar[frozenset[str]] = frozenset(vars(logging.makeLogRecord({})))
    # RQ's worker logs a failed job with its call arguments as extras (`arguments`, `kwargs`): those are patient
    # references and bundles, and logs hold no PHI, so they never reach a line.
    WITHHELD: ClassVar[frozenset[str]] = frozenset({"arguments", "kwargs"})

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {"ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
                "level": record.levelname.lower(), "logger": record.name, "msg": record.getMessage()}
        line.update({k: v for k, v in vars(record).items() if k not in self.STANDARD and k not in self.WITHHELD and not k.startswith("_")})
        if record.exc_info:
            line["exc"] = record.exc_info[0].__name__ if record.exc_info[0] else None
        return json.dumps(line, default=str)


def configure(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logging.Formatter.converter = time.gmtime
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # its access lines carry raw paths
    # Alembic announces each of its plugins at INFO on every start; the migrations it runs are still logged.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)



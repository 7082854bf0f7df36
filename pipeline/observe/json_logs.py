"""`--log-format json`: one JSON object per log line, for log shippers that parse fields.

Each line has `time` (ISO 8601, UTC), `level`, `logger` and `message`, plus `exception` (the
formatted traceback) when there is one. Messages go through `redact`, so credentials in a URL
never reach a log store.
"""

from __future__ import annotations

import datetime as dt
import json
import logging

from pipeline.connections import redact


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)

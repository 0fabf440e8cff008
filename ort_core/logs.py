"""Function log lines in the formats Lambda's Python runtime writes, tagged with the request id.

``AWS_LAMBDA_LOG_FORMAT=Text`` (default): ``[LEVEL]\\t<time>Z\\t<request id>\\t<message>``;
``JSON``: one object a line with timestamp, level, message, logger and requestId.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Mapping

_request_id = ""


def set_request_id(request_id: str) -> None:
    global _request_id
    _request_id = request_id


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.aws_request_id = _request_id
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "timestamp": self.formatTime(record, "%Y-%m-%dT%H:%M:%S")
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "message": record.getMessage(),
            "logger": record.name,
            "requestId": getattr(record, "aws_request_id", ""),
        }
        if record.exc_info:
            line["stackTrace"] = self.formatException(record.exc_info).splitlines()
        return json.dumps(line)


def setup_function_logging(environ: Mapping[str, str]) -> None:
    """Route the root logger to stdout in Lambda's format, once, at cold start."""
    handler = logging.StreamHandler(sys.stdout)
    handler.addFilter(_RequestIdFilter())
    if environ.get("AWS_LAMBDA_LOG_FORMAT", "").upper() == "JSON":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter(
                "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s",
                "%Y-%m-%dT%H:%M:%S",
            )
        )
    handler.formatter.converter = time.gmtime  # type: ignore[union-attr]
    root = logging.getLogger()
    root.addHandler(handler)
    level = environ.get("AWS_LAMBDA_LOG_LEVEL", "").upper()
    root.setLevel(level if isinstance(logging.getLevelName(level), int) else logging.INFO)

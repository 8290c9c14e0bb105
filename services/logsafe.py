"""Application logging that never writes a NIR or matricule INS to a log file.

The matricule INS and the NIR live only in the database (ins-rules.md, "Traceability").
Every handler of the application log gets :class:`RedactingFilter`, which masks anything
shaped like a NIR/NIA (13 characters, optionally followed by the 2-digit key, spaces
allowed, Corsica 2A/2B) before the record is formatted.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

# 1 or 2 (NIR) / 3, 4, 7, 8 (NIA, temporary) then 12 more characters, 2A/2B allowed, spaces allowed.
_NIR_LIKE = re.compile(
    r"(?<![0-9A-Za-z])[1-478]\s?\d{2}\s?\d{2}\s?(?:\d{2}|2[AaBb])\s?\d{3}\s?\d{3}(?:\s?\d{2})?(?![0-9A-Za-z])"
)
MASK = "[NIR masqué]"


def redact(text: str) -> str:
    """Mask every NIR-shaped sequence of ``text``."""
    return _NIR_LIKE.sub(MASK, text)


class RedactingFilter(logging.Filter):
    """Rewrites the record's message (with its arguments) through :func:`redact`."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not hide the record
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def configure_file_logging(path: Path, level: int = logging.INFO) -> logging.Handler:
    """Attach a redacting file handler to the ``insdesk`` logger tree and return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("insdesk")
    logger.setLevel(level)
    logger.addHandler(handler)
    return handler

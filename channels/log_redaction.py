"""Log lines never hold a shopper's email address, postal address or card-like number in clear.

`install()` wraps the logging module's record factory, so every record of every logger (Rasa's,
Sanic's, structlog's through the standard library, the actions') has its message, arguments and
traceback redacted as it is made, before any handler or formatter sees it. Rasa's process installs
it when it loads the shop's channels (channels/__init__.py); the action server in ops/action_server.py.

Redacted: email addresses; card-like numbers (13-19 digits, spaces or dashes allowed, checksum or
not: a log has no business with any of them); street addresses (a house number followed by up to
four words and a street word such as Street, Road, Avenue, Lane); UK postcodes.
Order numbers, prices and quantities are too short to match.
"""
from __future__ import annotations

import logging
import re

EMAIL_MASK = "[email hidden]"
CARD_MASK = "[card number hidden]"
ADDRESS_MASK = "[address hidden]"

_EMAIL = re.compile(r"[\w.+%-]+@[\w-]+(?:\.[\w-]+)+")
_CARD_LIKE = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?!\d)")
_STREET_WORDS = (r"street|st|road|rd|avenue|ave|lane|ln|drive|dr|boulevard|blvd|way|court|ct|place|pl|"
                 r"square|sq|terrace|close|crescent|parkway|highway|hwy|alley|row|gardens|strasse|straße|rue")
_STREET_ADDRESS = re.compile(
    rf"\b\d{{1,5}}[a-z]?,?(?:\s+[^\W\d_][\w'.-]*){{1,4}}\s+(?:{_STREET_WORDS})\b\.?", re.IGNORECASE
)
_UK_POSTCODE = re.compile(r"\b[A-Z]{1,2}\d[A-Z\d]?\s*\d[A-Z]{2}\b")


def redact(text: str) -> str:
    text = _EMAIL.sub(EMAIL_MASK, text)
    text = _CARD_LIKE.sub(CARD_MASK, text)
    text = _STREET_ADDRESS.sub(ADDRESS_MASK, text)
    return _UK_POSTCODE.sub(ADDRESS_MASK, text)


def _redacting(make_record):
    def make(*args, **kwargs) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a bad format string stays the logging module's own problem to report
            return record
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return record

    make.redacts_logs = True
    return make


def install() -> None:
    """Redact every log record made from now on in this process (installing twice changes nothing)."""
    factory = logging.getLogRecordFactory()
    if not getattr(factory, "redacts_logs", False):
        logging.setLogRecordFactory(_redacting(factory))

"""Logging setup (text or JSON lines) and a redaction filter that keeps secrets out of every log line."""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import traceback
from datetime import UTC, datetime
from typing import Any, TextIO
from urllib.parse import quote, quote_plus

MASK = "***"
# Whatever was registered, these shapes are never logged: an EDIN session cookie and a bearer token.
_PATTERNS = (
    (re.compile(r"(\bSID=)[^;,\s\"'&]+"), r"\1" + MASK),
    (re.compile(r"(\bBearer\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE), r"\1" + MASK),
)
_HANDLER_MARK = "_invite_batch_handler"
# Attributes every LogRecord has; anything else on a record is an `extra` worth showing in JSON.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}

# A secret this short also occurs inside ordinary words ("s" in "sent"): it is masked only where it stands
# whole, not inside a longer run of letters and digits; shorter than UNSAFE_SECRET it draws a warning too.
SHORT_SECRET = 8
UNSAFE_SECRET = 4

_secrets: set[str] = set()
_short: set[str] = set()
_secrets_lock = threading.Lock()
_ordered: tuple[str, ...] = ()
_short_re: re.Pattern[str] | None = None


def register_secret(value: str | None) -> None:
    """Mask `value` (and its URL-encoded forms) in every later log line and error text."""
    global _ordered, _short_re
    if not value:
        return
    forms = {value, quote(value, safe=""), quote_plus(value, safe="")}
    with _secrets_lock:
        if len(value) >= SHORT_SECRET:
            _secrets.update(forms)
            # Longest first, so a secret that contains another is masked whole.
            _ordered = tuple(sorted(_secrets, key=len, reverse=True))
            return
        if forms <= _short:
            return
        _short.update(forms)
        alternatives = "|".join(map(re.escape, sorted(_short, key=len, reverse=True)))
        _short_re = re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)")
    if len(value) < UNSAFE_SECRET:
        logging.getLogger(__name__).warning(
            "a secret of %d character(s) cannot be told from ordinary text: it is masked in logs only where it "
            "stands alone; use a longer password or token", len(value))


def redact(text: str) -> str:
    """`text` with every registered secret and every SID=/Bearer value replaced by ***."""
    for secret in _ordered:
        if secret in text:
            text = text.replace(secret, MASK)
    if _short_re is not None:
        text = _short_re.sub(MASK, text)
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites a record so that its message, exception and stack text carry no secret."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not hide the line, nor leak its args
            message = f"{record.msg!s} (unformattable arguments)"
        record.msg, record.args = redact(message), None
        if record.exc_info and record.exc_info[0] is not None:
            # Formatted once here so the traceback text (which holds exception messages) is redacted too.
            record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for key, value in list(vars(record).items()):
            if key not in _STANDARD_ATTRS and isinstance(value, str):
                setattr(record, key, redact(value))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, any `extra` fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                out[key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = record.stack_info
        return json.dumps(out, ensure_ascii=False, default=str)


def setup_logging(*, verbosity: int = 0, fmt: str = "text", stream: TextIO | None = None) -> None:
    """Send logs to `stream` (stderr): -1 warnings only, 0 info, 1 debug for our code, 2 debug for all."""
    level = logging.WARNING if verbosity < 0 else logging.INFO if verbosity == 0 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    setattr(handler, _HANDLER_MARK, True)
    handler.addFilter(RedactingFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    elif fmt == "text":
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    else:
        raise ValueError(f"log format must be text or json, got {fmt!r}")
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    # Libraries (urllib3, pyrate_limiter) stay at warnings unless asked twice: their debug lines are noise.
    root.setLevel(logging.DEBUG if verbosity >= 2 else logging.WARNING)
    logging.getLogger("batch").setLevel(level)

"""Validation (SPEC §4): a provider's row rules over every read row, and the field checks providers share."""

from __future__ import annotations

import re
from collections.abc import Callable, Container
from functools import lru_cache

from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email
from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES

from .config import Config
from .model import Row, Table
from .reader import paused_gc

_MAX_ID = 2**63  # ids are Java longs at most

# ---------------------------------------------------------------- e-mail

# email-validator costs ~70 µs a call: a million rows would spend over a minute in it. Plain ASCII
# addresses that surely pass it take this regex path instead, which returns exactly what the library
# would (tests/test_validation.py compares the two on thousands of generated addresses); everything
# else (Unicode, quoting, "--" in the domain, odd lengths, reserved domains) goes to the library itself.
_ATEXT = "A-Za-z0-9!#$%&'*+/=?^_`{|}~-"
# No capture groups and no nested repeats: the dot and hyphen rules are cheaper as substring tests.
_FAST_EMAIL = re.compile("[." + _ATEXT + "]+@(?:[A-Za-z0-9-]{1,63}\\.)+[A-Za-z]{2,63}")
_RESERVED = tuple(SPECIAL_USE_DOMAIN_NAMES)
_RESERVED_SUFFIXES = tuple("." + d for d in _RESERVED)
_CASELESS_LOCAL = frozenset(CASE_INSENSITIVE_MAILBOX_NAMES)  # the library lower-cases info@, sales@...
_CASELESS_MAX = max(map(len, _CASELESS_LOCAL))
_EMAIL_MAX = 254


def normalise_email(text: str) -> tuple[str, str]:
    """(address with its domain lower-cased, "") when valid, else ("", why not); syntax only, no DNS."""
    if _FAST_EMAIL.fullmatch(text) is not None and len(text) <= _EMAIL_MAX:
        local, _, domain = text.partition("@")
        if not (local[0] == "." or local[-1] == "." or ".." in local or domain[0] == "-" or "--" in domain
                or "-." in domain or ".-" in domain):
            lowered = domain.lower()
            if lowered not in _RESERVED and not lowered.endswith(_RESERVED_SUFFIXES):
                if len(local) <= _CASELESS_MAX and local.lower() in _CASELESS_LOCAL:
                    return f"{local.lower()}@{lowered}", ""
                # The same string object when nothing changes: a million rows keep one copy, not two.
                return (text if lowered == domain else f"{local}@{lowered}"), ""
    return _library_email(text)


@lru_cache(maxsize=4096)
def _library_email(text: str) -> tuple[str, str]:
    try:
        return validate_email(text, check_deliverability=False).normalized, ""
    except EmailNotValidError as e:
        reason = str(e).rstrip(".")
        return "", reason[:1].lower() + reason[1:]


def positive_int(text: str) -> str:
    """The canonical text of a positive whole number (a Java long), or "" when it is not one."""
    if text.isascii() and text.isdigit() and 0 < (n := int(text)) < _MAX_ID:
        return str(n)
    return ""


_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def normalise_uuid(text: str) -> str:
    """A UUID in its 36-character form, lower-cased, or "" when it is not one."""
    return text.lower() if _UUID.fullmatch(text) else ""


def quote(value: str, limit: int = 60) -> str:
    return f'"{value}"' if len(value) <= limit else f'"{value[: limit - 1]}…"'


# ---------------------------------------------------------------- rows

def validate_rows(table: Table, config: Config, *, skip: Container[int] = ()) -> list[Row]:
    """One Row per RawRow, in order, with every problem found (a bad row is data, not a crash); lines in
    `skip` (rows a resume already decided: plan.settle) are left out."""
    profile = config.profile
    check, identity = profile.rules(table, config), profile.identity
    with paused_gc():
        rows = [check(raw) for raw in table.rows] if not skip else [
            check(raw) for raw in table.rows if raw.line not in skip]
        for row in rows:  # the identity is computed once, here; plan and the snapshot carry it
            if not row.problems:
                row.identity = identity(row.values)
    return rows


def header_names(table: Table) -> Callable[[str], str]:
    """Field → the header as the user wrote it (the field name when the file has no such column)."""
    def header(field: str) -> str:
        i = table.fields.get(field)
        return table.headers[i] if i is not None else field
    return header



"""Field rules per provider (SPEC §4): every read row becomes a Row with normalised values or all its problems."""

from __future__ import annotations

import re
from collections.abc import Callable, Container
from functools import lru_cache
from operator import mul

from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email
from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES

from .config import Config
from .model import RawRow, Row, Table
from .reader import paused_gc

INVOICEBOX_EMAIL_MAX = 100  # the API's `identifier` is string(100)
_MAX_ID = 2**63  # EDIN ids are Java longs

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


# ---------------------------------------------------------------- codes

# Check digits as python-stdnum computes them (stdnum.ua.edrpou / stdnum.ua.rntrc), over ASCII bytes
# so the digits need no int() each: stdnum's is_valid costs ~8 µs a call, this under 1 µs, and a
# million-row file must validate in seconds. tests/test_validation.py checks them against stdnum.
_EDRPOU_WEIGHTS = (1, 2, 3, 4, 5, 6, 7)
_EDRPOU_WEIGHTS_345 = (7, 1, 2, 3, 4, 5, 6)  # codes starting with 3, 4 or 5
_RNOKPP_WEIGHTS = (-1, 5, 7, 9, 4, 6, 10, 5, 7)
_ZERO = ord("0")
_EDRPOU_OFFSET = sum(_EDRPOU_WEIGHTS) * _ZERO  # the digits' ASCII offset, weighed (both weight sets sum to 28)


def edrpou_valid(code: str) -> bool:
    """True when an 8-digit ASCII code has a valid EDRPOU check digit."""
    d = code.encode()
    weights = _EDRPOU_WEIGHTS_345 if d[0] in b"345" else _EDRPOU_WEIGHTS
    total: int = sum(map(mul, weights, d)) - _EDRPOU_OFFSET
    check = total % 11
    if check == 10:  # weigh again with every weight + 2
        check = (total + 2 * (sum(d[:7]) - 7 * _ZERO)) % 11 % 10
    return check == d[7] - _ZERO


def rnokpp_valid(code: str) -> bool:
    """True when a 10-digit ASCII code has a valid RNOKPP check digit."""
    d = code.encode()
    total: int = sum(map(mul, _RNOKPP_WEIGHTS, d)) - sum(_RNOKPP_WEIGHTS) * _ZERO
    return total % 11 % 10 == d[9] - _ZERO


def normalise_code(text: str) -> tuple[str, str, str]:
    """(code, problem, note): an EDRPOU or RNOKPP; fewer than 8 digits are zero-padded (a numeric cell ate them)."""
    code = text.replace(" ", "") if " " in text else text
    if not (code.isascii() and code.isdigit()):
        return "", "is not a code: only digits are allowed", ""
    note = ""
    if len(code) < 8:
        padded = code.zfill(8)
        note = f"code {code} zero-padded to {padded}"
        code = padded
    if code.count("0") == len(code):
        return "", "is not a code: all zeros", ""
    if len(code) == 8:
        return (code, "", note) if edrpou_valid(code) else ("", "is not a valid EDRPOU: wrong check digit", "")
    if len(code) == 10:
        return (code, "", note) if rnokpp_valid(code) else ("", "is not a valid RNOKPP: wrong check digit", "")
    return "", f"has {len(code)} digits; an EDRPOU has 8, an RNOKPP 10", ""


def positive_int(text: str) -> str:
    """The canonical text of a positive whole number (a Java long), or "" when it is not one."""
    if text.isascii() and text.isdigit() and 0 < (n := int(text)) < _MAX_ID:
        return str(n)
    return ""


_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def normalise_uuid(text: str) -> str:
    """A UUID in its 36-character form, lower-cased, or "" when it is not one."""
    return text.lower() if _UUID.fullmatch(text) else ""


def _quote(value: str, limit: int = 60) -> str:
    return f'"{value}"' if len(value) <= limit else f'"{value[: limit - 1]}…"'


# ---------------------------------------------------------------- rows

def validate_rows(table: Table, config: Config, *, skip: Container[int] = ()) -> list[Row]:
    """One Row per RawRow, in order, with every problem found (a bad row is data, not a crash); lines in
    `skip` (rows a resume already decided: plan.settle) are left out."""
    check = _edin_rules(table, config) if config.provider == "edin" else _invoicebox_rules(table, config)
    with paused_gc():
        if not skip:
            return [check(raw) for raw in table.rows]
        return [check(raw) for raw in table.rows if raw.line not in skip]


def _headers(table: Table) -> Callable[[str], str]:
    """Field → the header as the user wrote it (the field name when the file has no such column)."""
    def header(field: str) -> str:
        i = table.fields.get(field)
        return table.headers[i] if i is not None else field
    return header


def _edin_rules(table: Table, config: Config) -> Callable[[RawRow], Row]:
    col, h = table.fields.get, _headers(table)
    i_pid, i_code, i_email = col("partner_id"), col("code"), col("email")
    i_tpl, i_own = col("contract_template_id"), col("owner_company_id")
    plain = [(f, i) for f in ("name", "contact_person", "phone", "comment") if (i := col(f)) is not None]
    cfg_tpl, cfg_own = config.invite.contract_template_id, config.invite.owner_company_id
    cfg_tpl_text, cfg_own_text = str(cfg_tpl), str(cfg_own)  # made once, shared by every row
    # A mark-only job sends no invitation, so it needs neither a template nor an owner company.
    need_template = config.action == "invite"
    if i_code is not None and i_pid is not None:
        missing_id = f"no partner id or code: fill {h('code')} or {h('partner_id')}"
    else:
        missing_id = f"{h('code') if i_code is not None else h('partner_id')} is empty"

    def check(raw: RawRow) -> Row:
        cells = raw.cells
        values: dict[str, str] = {}
        problems: list[str] = []
        notes: tuple[str, ...] = ()

        pid = cells[i_pid] if i_pid is not None else ""
        if pid:
            if ok := positive_int(pid):
                values["partner_id"] = ok
            else:
                problems.append(f"{h('partner_id')}: {_quote(pid)} is not a partner id (a positive whole number)")
        code = cells[i_code] if i_code is not None else ""
        # The common case first, without the general function's work: a well-formed 8-digit EDRPOU.
        if len(code) == 8 and code.isdigit() and code.isascii() and code != "00000000" and edrpou_valid(code):
            values["code"] = code
        elif code:
            value, problem, note = normalise_code(code)
            if value:
                values["code"] = value
                if note:
                    notes = (note,)
            else:
                problems.append(f"{h('code')}: {_quote(code)} {problem}")
        if not pid and not code:
            problems.append(missing_id)

        email = cells[i_email] if i_email is not None else ""
        if email:
            address, why = normalise_email(email)
            if address:
                values["email"] = address
            else:
                problems.append(f"{h('email')}: {_quote(email)} is not a valid e-mail address ({why})")
        for field, i in plain:
            if v := cells[i]:
                values[field] = v

        # A row's own template or owner company wins over the config's, whichever of the two the
        # config sets: the row is the more specific instruction. Both in one row is ambiguous.
        tpl = cells[i_tpl] if i_tpl is not None else ""
        own = cells[i_own] if i_own is not None else ""
        if tpl and own:
            problems.append(f"{h('contract_template_id')} and {h('owner_company_id')}: fill only one of them")
        elif tpl or own:
            field, text = ("contract_template_id", tpl) if tpl else ("owner_company_id", own)
            if ok := positive_int(text):
                values[field] = ok
            else:
                problems.append(f"{h(field)}: {_quote(text)} is not an id (a positive whole number)")
        elif cfg_tpl is not None:
            values["contract_template_id"] = cfg_tpl_text
        elif cfg_own is not None:
            values["owner_company_id"] = cfg_own_text
        elif need_template:
            problems.append(f"no contract template or owner company: fill {h('contract_template_id')}"
                            " or set invite.contract_template_id (or invite.owner_company_id) in the config")
        return Row(raw.line, cells, values, tuple(problems) if problems else (), notes)

    return check


def _invoicebox_rules(table: Table, config: Config) -> Callable[[RawRow], Row]:
    col, h = table.fields.get, _headers(table)
    i_email, i_pid = col("email"), col("partner_id")
    cfg_pid = normalise_uuid(config.invite.partner_id or "")
    no_pid = (f"no partner id: fill {h('partner_id')} or set invite.partner_id in the config"
              if i_pid is not None else "no partner id: set invite.partner_id in the config")

    def check(raw: RawRow) -> Row:
        cells = raw.cells
        values: dict[str, str] = {}
        problems: list[str] = []
        email = cells[i_email] if i_email is not None else ""
        if not email:
            problems.append(f"{h('email')} is empty")
        else:
            address, why = normalise_email(email)
            if not address:
                problems.append(f"{h('email')}: {_quote(email)} is not a valid e-mail address ({why})")
            elif len(address) > INVOICEBOX_EMAIL_MAX:
                problems.append(f"{h('email')}: {_quote(email)} is longer than {INVOICEBOX_EMAIL_MAX} characters")
            else:
                values["email"] = address
        pid = cells[i_pid] if i_pid is not None else ""
        if pid:
            if ok := normalise_uuid(pid):
                values["partner_id"] = ok
            else:
                problems.append(f"{h('partner_id')}: {_quote(pid)} is not a partner id (a UUID of 36 characters)")
        elif cfg_pid:
            values["partner_id"] = cfg_pid
        else:
            problems.append(no_pid)
        return Row(raw.line, cells, values, tuple(problems) if problems else ())

    return check

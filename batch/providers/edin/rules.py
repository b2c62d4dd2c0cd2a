"""EDIN's field rules (SPEC §4): EDRPOU / RNOKPP codes with check digits, ids, the template or owner company."""

from __future__ import annotations

from collections.abc import Callable
from operator import mul

from ...config import Config
from ...model import RawRow, Row, Table
from ...validation import header_names, normalise_email, positive_int, quote

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



def rules(table: Table, config: Config) -> Callable[[RawRow], Row]:
    """The EDIN row check (SPEC §4) for this file's columns and this config."""
    col, h = table.fields.get, header_names(table)
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
                problems.append(f"{h('partner_id')}: {quote(pid)} is not a partner id (a positive whole number)")
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
                problems.append(f"{h('code')}: {quote(code)} {problem}")
        if not pid and not code:
            problems.append(missing_id)

        email = cells[i_email] if i_email is not None else ""
        if email:
            address, why = normalise_email(email)
            if address:
                values["email"] = address
            else:
                problems.append(f"{h('email')}: {quote(email)} is not a valid e-mail address ({why})")
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
                problems.append(f"{h(field)}: {quote(text)} is not an id (a positive whole number)")
        elif cfg_tpl is not None:
            values["contract_template_id"] = cfg_tpl_text
        elif cfg_own is not None:
            values["owner_company_id"] = cfg_own_text
        elif need_template:
            problems.append(f"no contract template or owner company: fill {h('contract_template_id')}"
                            " or set invite.contract_template_id (or invite.owner_company_id) in the config")
        return Row(raw.line, cells, values, tuple(problems) if problems else (), notes)

    return check

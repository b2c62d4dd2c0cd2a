"""Diadoc's field rules (SPEC §13.2): INN with check digits (python-stdnum), KPP, e-mail, message."""

from __future__ import annotations

import re
from collections.abc import Callable

from stdnum.ru import inn as stdnum_inn

from ...config import Config
from ...model import RawRow, Row, Table
from ...validation import header_names, normalise_email, quote

MESSAGE_MAX = 2000  # MessageToCounteragent
_KPP = re.compile(r"\d{4}[\dA-Z]{2}\d{3}")


def normalise_inn(text: str) -> tuple[str, str, str]:
    """(inn, problem, note): 10 or 12 digits with valid check digits; 9 or 11 (a numeric cell ate a leading zero)
    are zero-padded when the padded value is valid."""
    inn = text.replace(" ", "")
    if not (inn.isascii() and inn.isdigit()):
        return "", "is not an INN: only digits are allowed", ""
    if inn.count("0") == len(inn):
        return "", "is not an INN: all zeros", ""
    if len(inn) in (9, 11):
        padded = "0" + inn
        if stdnum_inn.is_valid(padded):
            return padded, "", f"INN {inn} zero-padded to {padded}"
        return "", f"has {len(inn)} digits; an INN has 10 (organisation) or 12 (individual)", ""
    if len(inn) not in (10, 12):
        return "", f"has {len(inn)} digits; an INN has 10 (organisation) or 12 (individual)", ""
    if not stdnum_inn.is_valid(inn):
        return "", "is not a valid INN: wrong check digits", ""
    return inn, "", ""


def normalise_kpp(text: str) -> tuple[str, str, str]:
    """(kpp, problem, note): 9 characters NNNNPPNNN (P a digit or A-Z, upper-cased); 8 digits are zero-padded."""
    kpp = text.replace(" ", "").upper()
    note = ""
    if len(kpp) == 8 and kpp.isascii() and kpp.isdigit():
        note = f"KPP {kpp} zero-padded to 0{kpp}"
        kpp = "0" + kpp
    if not (kpp.isascii() and _KPP.fullmatch(kpp)):
        return "", "is not a KPP: 9 characters, 4 digits, 2 digits or letters A-Z, 3 digits", ""
    return kpp, "", note


def rules(table: Table, config: Config) -> Callable[[RawRow], Row]:
    """The Diadoc row check (SPEC §13.2) for this file's columns and this config."""
    col, h = table.fields.get, header_names(table)
    i_inn, i_kpp, i_name, i_email, i_msg = (col(f) for f in ("inn", "kpp", "name", "email", "message"))
    my_box = config.invite.my_box_id or ""
    default_message = config.invite.message or ""

    def check(raw: RawRow) -> Row:
        cells = raw.cells
        values: dict[str, str] = {"my_box": my_box} if my_box else {}
        problems: list[str] = []
        notes: list[str] = []

        text = cells[i_inn] if i_inn is not None else ""
        if not text:
            problems.append(f"{h('inn')} is empty")
        else:
            inn, problem, note = normalise_inn(text)
            if inn:
                values["inn"] = inn
                if note:
                    notes.append(note)
            else:
                problems.append(f"{h('inn')}: {quote(text)} {problem}")
        text = cells[i_kpp] if i_kpp is not None else ""
        if text:
            kpp, problem, note = normalise_kpp(text)
            if not kpp:
                problems.append(f"{h('kpp')}: {quote(text)} {problem}")
            elif len(values.get("inn", "")) == 12:
                problems.append(f"{h('kpp')}: an individual's INN (12 digits) has no KPP")
            else:
                values["kpp"] = kpp
                if note:
                    notes.append(note)
        if i_name is not None and (name := cells[i_name]):
            values["name"] = name
        email = cells[i_email] if i_email is not None else ""
        if email:
            address, why = normalise_email(email)
            if address:
                values["email"] = address
            else:
                problems.append(f"{h('email')}: {quote(email)} is not a valid e-mail address ({why})")
        message = (cells[i_msg] if i_msg is not None else "") or default_message
        if len(message) > MESSAGE_MAX:
            problems.append(f"{h('message')}: {len(message)} characters, at most {MESSAGE_MAX}")
        elif message:
            values["message"] = message
        return Row(raw.line, cells, values, tuple(problems) if problems else (), tuple(notes))

    return check

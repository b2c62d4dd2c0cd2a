"""EDIN partner records as the sandbox keeps them, and preloading them from a JSON or CSV file."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import ConfigError

DEMO_ACCOUNT_ID = 7001

# Preload files use the API's names; snake_case and a few obvious spellings are accepted too.
_ALIASES = {
    "partnerid": "partnerId", "partner_id": "partnerId", "id": "partnerId",
    "accountid": "accountId", "account_id": "accountId",
    "code": "code", "name": "name",
    "contactemail": "contactEmail", "contact_email": "contactEmail", "email": "contactEmail",
    "contactperson": "contactPerson", "contact_person": "contactPerson",
    "contactphone": "contactPhone", "contact_phone": "contactPhone", "phone": "contactPhone",
    "comment": "comment",
    "invitationdate": "invitationDate", "invitation_date": "invitationDate",
    "status": "status",
    "contractstatus": "contractStatus", "contract_status": "contractStatus",
    "companyid": "companyId", "company_id": "companyId",
}
_INTS = ("partnerId", "accountId", "invitationDate", "status", "contractStatus", "companyId")
_TEXTS = ("code", "name", "contactEmail", "contactPerson", "contactPhone", "comment")


@dataclass(slots=True)
class Partner:
    """One counterparty in the account's list; `to_json` gives the API's Partner object."""

    partnerId: int  # the API's spelling, so to_json is a plain field dump
    code: str
    name: str
    accountId: int = DEMO_ACCOUNT_ID
    contactEmail: str | None = None
    contactPerson: str | None = None
    contactPhone: str | None = None
    comment: str | None = None
    invitationDate: int = 0
    status: int = 0
    contractStatus: int = 0
    companyId: int = 0

    def matches(self, pattern: str) -> bool:
        """Substring of the code, or case-insensitive substring of the name."""
        return pattern in self.code or pattern.casefold() in self.name.casefold()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:  # optional contact fields are absent, as in the docs' examples
                out[f.name] = value
        return out


def load_partners(path: str) -> list[Partner]:
    """Partners from a JSON list (or {"partners": [...]}) or a CSV with a header row; ConfigError if unusable."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError([f"cannot read the sandbox partners file: {e.__class__.__name__}"], path) from None
    records = _read_json(text, path) if p.suffix.lower() == ".json" else _read_csv(text)
    problems: list[str] = []
    partners: list[Partner] = []
    for i, record in enumerate(records, start=1):
        partner = _partner(record, i, problems)
        if partner is not None:
            partners.append(partner)
    _number(partners, problems)
    if problems:
        raise ConfigError(problems, path)
    return partners


def _read_json(text: str, path: str) -> list[Any]:
    try:
        data = json.loads(text)
    except ValueError:
        raise ConfigError(["not valid JSON"], path) from None
    if isinstance(data, dict):
        data = data.get("partners")
    if not isinstance(data, list):
        raise ConfigError(["expected a JSON list of partners (or {\"partners\": [...]})"], path)
    return data


def _read_csv(text: str) -> list[Any]:
    try:
        dialect: Any = csv.Sniffer().sniff(text.split("\n", 1)[0], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    return [{k: v for k, v in row.items() if v not in (None, "")}
            for row in csv.DictReader(io.StringIO(text), dialect=dialect)]


def _partner(record: Any, n: int, problems: list[str]) -> Partner | None:
    where, before = f"partner {n}", len(problems)
    if not isinstance(record, dict):
        problems.append(f"{where}: must be an object")
        return None
    values: dict[str, Any] = {}
    for key, value in record.items():
        name = _ALIASES.get(str(key).strip().lower().replace("-", "_"))
        if name is None:
            problems.append(f"{where}: unknown field {key!r}")
            continue
        try:
            values[name] = _int(value, name) if name in _INTS else str(value).strip()
        except ValueError:
            problems.append(f"{where}: {key} must be a whole number (invitationDate may be an ISO date)")
    for required in ("code", "name"):
        if not values.get(required):
            problems.append(f"{where}: {required} is required")
    if len(problems) > before:
        return None
    values.setdefault("partnerId", 0)
    return Partner(**values)


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if name == "invitationDate" and not text.lstrip("-").isdigit():
        moment = datetime.fromisoformat(text)
        return int(moment.replace(tzinfo=moment.tzinfo or UTC).timestamp())
    return int(text)


def _number(partners: list[Partner], problems: list[str]) -> None:
    """Give ids to partners without one (after the highest given) and refuse repeated ids or codes."""
    next_id = max([p.partnerId for p in partners] + [1_000_000]) + 1
    seen_ids: set[int] = set()
    seen_codes: set[str] = set()
    for p in partners:
        if p.partnerId <= 0:
            p.partnerId, next_id = next_id, next_id + 1
        if p.partnerId in seen_ids:
            problems.append(f"partnerId {p.partnerId} appears twice")
        if p.code in seen_codes:
            problems.append(f"code {p.code} appears twice (the platform keeps one partner per code)")
        seen_ids.add(p.partnerId)
        seen_codes.add(p.code)

"""What the provider clients hand back, and tolerant readers for the loosely documented JSON they parse."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Partner:
    """An EDIN counterparty as far as the invitation job cares."""

    partner_id: int
    code: str
    name: str
    invitation_date: int | None  # unix seconds; None when absent or 0 (never invited)


@dataclass(frozen=True)
class Invitation:
    """An accepted Invoicebox invitation."""

    invitation_id: str
    request_id: str
    http_status: int
    attempts: int


def as_int(value: Any) -> int | None:
    """An integer from an int or a digit string; None for anything else (bools, floats with a fraction)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def partner_from_json(item: Any) -> Partner | None:
    """A Partner from one element of EDIN's answer; None when it has no usable partnerId."""
    if not isinstance(item, Mapping):
        return None
    partner_id = as_int(item.get("partnerId"))
    if partner_id is None or partner_id <= 0:
        return None
    code, name = item.get("code"), item.get("name")
    invited = as_int(item.get("invitationDate"))
    return Partner(
        partner_id=partner_id,
        code="" if code is None else str(code).strip(),
        name="" if name is None else str(name).strip(),
        invitation_date=invited if invited else None,
    )

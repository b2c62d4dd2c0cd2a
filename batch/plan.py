"""Row identities, duplicates within the file, and what the checkpoint says is already done."""

from __future__ import annotations

from collections.abc import Sequence

from .model import Row


def identity(row: Row, provider: str) -> str:
    """The key a row is known by in the checkpoint and among duplicates (SPEC §6); the row must be valid."""
    v = row.values
    if provider == "invoicebox":
        return f"{v['partner_id']}|{v['email'].lower()}"
    key = f"pid:{v['partner_id']}" if "partner_id" in v else f"code:{v['code']}"
    if "contract_template_id" in v:
        return f"{key}|tpl:{v['contract_template_id']}"
    if "owner_company_id" in v:
        return f"{key}|own:{v['owner_company_id']}"
    return key  # a mark-only job needs no template


def find_duplicates(rows: Sequence[Row], provider: str) -> dict[int, int]:
    """Line of each valid row that repeats an earlier valid row's identity → that earlier row's line."""
    first: dict[str, int] = {}
    duplicates: dict[int, int] = {}
    for row in rows:
        if row.problems:
            continue
        key = identity(row, provider)
        earlier = first.setdefault(key, row.line)
        if earlier != row.line:
            duplicates[row.line] = earlier
    return duplicates

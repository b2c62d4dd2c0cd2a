"""The providers' identity rules and plan.find_duplicates (SPEC §4 duplicates, §6 identities)."""

from __future__ import annotations

import pytest

from batch import providers
from batch.model import Row
from batch.plan import find_duplicates
from batch.providers.base import Identity

PID = "01771534-1a57-f184-dee3-ebeb91dded76"


def row(line: int, problems: tuple[str, ...] = (), provider: str = "edin", **values: str) -> Row:
    """A row as validation leaves it: a valid one carries its provider's identity."""
    ident = None if problems else providers.get(provider).identity(values)
    return Row(line=line, cells=(), values=values, problems=problems, identity=ident)


@pytest.mark.parametrize(
    ("values", "provider", "expected"),
    [
        ({"code": "04533319", "contract_template_id": "5551"}, "edin",
         Identity("code:04533319|tpl:5551", "tpl:5551")),
        ({"code": "04533319", "owner_company_id": "77"}, "edin", Identity("code:04533319|own:77", "own:77")),
        ({"partner_id": "42", "code": "04533319", "contract_template_id": "5551"}, "edin",
         Identity("pid:42|tpl:5551", "tpl:5551", "42")),
        ({"partner_id": "42", "owner_company_id": "77"}, "edin", Identity("pid:42|own:77", "own:77", "42")),
        ({"code": "04533319"}, "edin", Identity("code:04533319")),
        ({"email": "Shop@Shop.com", "partner_id": PID}, "invoicebox", Identity(f"{PID}|shop@shop.com")),
    ],
    ids=["code-template", "code-owner", "id-wins-over-code", "id-owner", "mark-only", "invoicebox-lower-case"],
)
def test_identity(values: dict[str, str], provider: str, expected: Identity) -> None:
    assert providers.get(provider).identity(values) == expected


def test_later_rows_name_the_first_occurrence() -> None:
    rows = [
        row(2, code="04533319", contract_template_id="1"),
        row(3, code="47893285", contract_template_id="1"),
        row(5, code="04533319", contract_template_id="1"),
        row(6, code="04533319", contract_template_id="2"),  # another template: another invitation
        row(9, code="04533319", contract_template_id="1"),
    ]
    assert find_duplicates(rows) == {5: 2, 9: 2}


def test_invalid_rows_are_neither_duplicates_nor_originals() -> None:
    rows = [
        row(2, ("ЄДРПОУ: bad",), code="04533319", contract_template_id="1"),
        row(3, code="04533319", contract_template_id="1"),
        row(4, ("Email: bad",), code="04533319", contract_template_id="1"),
        row(5, code="04533319", contract_template_id="1"),
    ]
    assert find_duplicates(rows) == {5: 3}


def test_invoicebox_addresses_differing_only_by_case_are_duplicates() -> None:
    rows = [
        row(2, provider="invoicebox", email="Shop@shop.com", partner_id=PID),
        row(3, provider="invoicebox", email="shop@shop.com", partner_id=PID),
        row(4, provider="invoicebox", email="SHOP@shop.com", partner_id="9f0c1e2a-3b4c-4d5e-8f90-a1b2c3d4e5f6"),
    ]
    assert find_duplicates(rows) == {3: 2}


def test_no_duplicates() -> None:
    rows = [row(2, partner_id="1"), row(3, partner_id="2"), row(4, code="04533319")]
    assert find_duplicates(rows) == {}

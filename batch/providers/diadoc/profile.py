"""Kontur.Diadoc's profile: its config section, input fields and identity (SPEC §13.1, §13.2)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...checkpoint import Item
from ...config import Config, Section, check_base_url
from ...model import RawRow, Row, Table
from ..base import Field, Identity, Provider, Secrets, Session
from . import rules

if TYPE_CHECKING:
    from ...checkpoint import Journal
    from ...clock import Clock
    from ...http import HttpClient

DEFAULT_TOKEN_URL = "https://identity.kontur.ru/connect/token"
UNREGISTERED = ("invite_by_inn", "fail")


@dataclass(frozen=True, kw_only=True)
class DiadocAuth:
    token_url: str | None = None  # None: identity.kontur.ru, or a loopback sandbox's own /connect/token
    client_id: str
    client_secret: str = field(repr=False)
    refresh_token: str = field(default="", repr=False)  # or refresh_token_file (exactly one)
    refresh_token_file: str | None = None

    def secrets(self) -> tuple[str, ...]:
        return (self.client_secret, self.refresh_token)


@dataclass(frozen=True, kw_only=True)
class DiadocInvite:
    my_box_id: str | None = None  # a BoxIdGuid; None: the account's only box (GetMyOrganizations)
    my_department_id: str | None = None
    message: str | None = None
    unregistered: str = "invite_by_inn"  # invite_by_inn | fail
    accept_incoming: bool = False
    reinvite_rejected: bool = False
    result_timeout: float = 120.0


FIELDS = (
    Field("inn", ("inn", "ИНН", "ИНН контрагента", "ИНН организации"), "yes",
          "Counterparty's INN: 10 digits (organisation) or 12 (individual), with valid check digits. Format the "
          "column as text so leading zeros are kept.",
          "ІПН контрагента (ИНН): 10 цифр (організація) або 12 (фізична особа) з правильними контрольними "
          "цифрами. Стовпець має текстовий формат, тож нулі на початку зберігаються.",
          "ИНН контрагента, ИНН организации", header="ИНН"),
    Field("kpp", ("kpp", "КПП", "КПП контрагента"), "no",
          "KPP, 9 characters; picks a branch, or one of several organisations with the same INN. Not for a "
          "12-digit INN.",
          "КПП, 9 символів; обирає філію або одну з кількох організацій з тим самим ІПН. Не для ІПН з 12 цифр.",
          "КПП контрагента", header="КПП"),
    Field("name", ("name", "company", "Назва", "Найменування", "Название", "Наименование"), "no",
          "Company name; for your reference only, not sent.",
          "Назва компанії; лише для довідки, не надсилається.", "Название, Назва", header="Наименование"),
    Field("email", ("email", "e-mail", "identifier", "Ел. пошта", "Електронна пошта", "Электронная почта", "Почта"),
          "no", "E-mail address; checked and kept in the results, not sent (the API has no such field).",
          "Електронна пошта; перевіряється й зберігається в результатах, не надсилається.",
          "e-mail, Электронная почта", header="Email"),
    Field("message", ("message", "Сообщение", "Текст приглашения"), "no",
          "The invitation's message, at most 2000 characters; empty: the config's invite.message.",
          "Текст запрошення, не довше 2000 символів; порожньо: invite.message з конфігурації.",
          "Текст приглашения", header="Сообщение"),
)


def box_guid(text: str) -> str:
    """A BoxIdGuid from the GUID or the `…@diadoc.ru` form of a box id; "" when it is neither."""
    text = text.strip()
    if text.lower().endswith("@diadoc.ru"):
        text = text[: -len("@diadoc.ru")]
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return ""


class DiadocProvider(Provider):
    """Kontur.Diadoc: find the organisation, read the relation, invite (AcquireCounteragent V3), poll its task."""

    name = "diadoc"
    title = "Kontur.Diadoc"
    default_base_url = "https://diadoc-api.kontur.ru"
    default_rate = ("50/s",)  # the docs advise ≤ 100 requests/s in all
    request_id_header = "X-Kontur-Trace-Id"
    fields = FIELDS
    required = ("inn",)

    def parse_settings(self, auth: Section, invite: Section, action: str) -> tuple[Secrets, Any]:
        for key, owner in (("email", "edin"), ("password", "edin"), ("token", "invoicebox")):
            if auth.has(key):
                auth.text(key)
                auth.problem(key, f"is for {owner}; diadoc uses client_id, client_secret and a refresh token")
        token_url = auth.text("token_url")
        if token_url is not None:
            problem = "must be an http(s) URL" if token_url == "embedded" else check_base_url(token_url)
            if problem:
                auth.problem("token_url", problem)
        client_id, client_secret = auth.text("client_id"), auth.text("client_secret")
        for key, value in (("client_id", client_id), ("client_secret", client_secret)):
            if not value:
                auth.problem(key, "is required for diadoc")
        refresh, refresh_file = auth.text("refresh_token"), auth.text("refresh_token_file")
        if bool(refresh) == bool(refresh_file):
            auth.problem("refresh_token", "give refresh_token or refresh_token_file (exactly one)")
        elif refresh_file and not Path(refresh_file).is_file():
            auth.problem("refresh_token_file", f"no such file: {refresh_file}")

        my_box = invite.text("my_box_id")
        if my_box is not None and not box_guid(my_box):
            invite.problem("my_box_id", f"must be a BoxIdGuid (or the …@diadoc.ru form), got {my_box!r}")
        department = invite.text("my_department_id")
        if department is not None and not box_guid(department):
            invite.problem("my_department_id", f"must be a GUID, got {department!r}")
        message = invite.text("message")
        if message is not None and len(message) > rules.MESSAGE_MAX:
            invite.problem("message", f"at most {rules.MESSAGE_MAX} characters, got {len(message)}")
        unregistered = invite.text("unregistered", UNREGISTERED[0]) or UNREGISTERED[0]
        if unregistered not in UNREGISTERED:
            invite.problem("unregistered", f"must be {' or '.join(UNREGISTERED)}, got {unregistered!r}")
        opts = DiadocInvite(
            my_box_id=box_guid(my_box) or None if my_box else None,
            my_department_id=box_guid(department) or None if department else None,
            message=message or None, unregistered=unregistered,
            accept_incoming=invite.flag("accept_incoming", False),
            reinvite_rejected=invite.flag("reinvite_rejected", False),
            result_timeout=invite.number("result_timeout", 120.0, minimum=0.001))
        return DiadocAuth(token_url=token_url, client_id=client_id or "", client_secret=client_secret or "",
                          refresh_token=refresh or "", refresh_token_file=refresh_file or None), opts

    def rules(self, table: Table, config: Config) -> Callable[[RawRow], Row]:
        return rules.rules(table, config)

    def identity(self, values: Mapping[str, str]) -> Identity:
        """Own box + INN + KPP (SPEC §13.2); the box is the configured one (else the account's only box)."""
        who = f"inn:{values['inn']}/{values.get('kpp', '')}"
        box = values.get("my_box", "")
        return Identity(f"box:{box}|{who}" if box else who, f"box:{box}" if box else "")

    def reconciles(self, item: Item) -> bool:
        return True  # a TaskId is polled; without one, the relation is read (SPEC §13.4, flows.py)

    def session(self, config: Config, http: HttpClient, journal: Journal, clock: Clock,
                should_stop: Callable[[], bool]) -> Session:
        from .flows import DiadocSession

        return DiadocSession(config, http, journal, clock, should_stop)

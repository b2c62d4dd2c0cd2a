"""EDIN DOCflow's profile: its config section, input fields, identity and follow-up (SPEC §3, §4, §6)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ...checkpoint import Item, ItemState
from ...config import Config, Section
from ...model import RawRow, Row, Table
from ..base import Done, Field, Identity, Provider, Secrets, Session
from . import rules

if TYPE_CHECKING:
    from ...checkpoint import Journal
    from ...clock import Clock
    from ...http import HttpClient


@dataclass(frozen=True, kw_only=True)
class EdinAuth:
    email: str
    password: str = field(repr=False)

    def secrets(self) -> tuple[str, ...]:
        return (self.password,)


@dataclass(frozen=True, kw_only=True)
class EdinInvite:
    contract_template_id: int | None = None
    owner_company_id: int | None = None
    create_missing_partners: bool = True
    skip_already_invited: bool = True
    mark_status: bool = True
    status_batch_size: int = 100


FIELDS = (
    Field("partner_id", ("partner_id", "partnerId", "ID контрагента", "ID партнера", "Ідентифікатор партнера",
                         "Идентификатор партнера"),
          "partner_id or code",
          "EDIN partner ID, a positive integer. When filled in, the partner is not looked up by code.",
          "Ідентифікатор партнера в EDIN, ціле додатне число. Якщо заповнено, пошук за кодом не виконується.",
          "ID контрагента, ID партнера, Ідентифікатор партнера"),
    Field("code", ("code", "edrpou", "ЄДРПОУ", "Код ЄДРПОУ", "ЕДРПОУ", "ЕГРПОУ", "Код ЕГРПОУ", "РНОКПП", "ІПН",
                   "ИНН"),
          "partner_id or code",
          "EDRPOU (8 digits) or RNOKPP (10 digits) with a valid check digit. The column is formatted as text so "
          "leading zeros are kept.",
          "Код ЄДРПОУ (8 цифр) або РНОКПП (10 цифр) з правильною контрольною цифрою. Стовпець має текстовий "
          "формат, тож нулі на початку зберігаються.",
          "ЄДРПОУ, Код ЄДРПОУ, РНОКПП, ІПН"),
    Field("name", ("name", "company", "Назва", "Найменування", "Название", "Наименование"),
          "to create a partner",
          "Company name; needed only when the partner does not exist in EDIN yet and must be created.",
          "Назва компанії; потрібна лише тоді, коли партнера ще немає в EDIN і його треба створити.",
          "Назва, Найменування"),
    Field("email", ("email", "e-mail", "identifier", "Ел. пошта", "Електронна пошта", "Электронная почта", "Почта"),
          "to create a partner",
          "Partner's e-mail address; needed only when the partner must be created; must be valid.",
          "Електронна пошта партнера; потрібна лише для створення партнера; має бути правильною адресою.",
          "Ел. пошта, Електронна пошта"),
    Field("contact_person", ("contact_person", "contact", "Контактна особа", "Контактное лицо", "ПІБ", "ФИО"),
          "no", "Contact person; optional, sent when the partner is created.",
          "Контактна особа; необов'язково, передається під час створення партнера.", "Контактна особа, ПІБ"),
    Field("phone", ("phone", "Телефон"),
          "no", "Phone number; optional, sent when the partner is created.",
          "Номер телефону; необов'язково, передається під час створення партнера.", "Телефон"),
    Field("comment", ("comment", "Коментар", "Комментарий", "Примітка", "Примечание"),
          "no", "Comment; optional, sent when the partner is created.",
          "Коментар; необов'язково, передається під час створення партнера.", "Коментар, Примітка"),
    Field("contract_template_id", ("contract_template_id", "template_id", "Шаблон"),
          "one of the two, here or in the config",
          "Contract template ID, a positive integer. Leave empty to use the config's; exactly one of this and "
          "owner_company_id must result.",
          "Ідентифікатор шаблону договору, ціле додатне число. Залиште порожнім, щоб узяти значення з "
          "конфігурації; має вийти рівно одне з цього поля та owner_company_id.",
          "template_id, Шаблон"),
    Field("owner_company_id", ("owner_company_id", "company_id"),
          "one of the two, here or in the config",
          "Owner company ID, a positive integer: the alternative to contract_template_id.",
          "Ідентифікатор компанії-власника, ціле додатне число: альтернатива contract_template_id.",
          "company_id"),
)


_SCOPES: dict[str, str] = {}  # a template id → its scope text, shared by every row that names it
_identity = tuple.__new__  # an Identity without NamedTuple's Python-level __new__


def _mark_owed(item: Done) -> bool:
    """A sent partner whose "invitation sent" mark is still owed; "" too: sent while marking was switched off,
    and the operator has switched it on since."""
    return item.state == ItemState.SENT and item.marked in ("", "no", "failed") and bool(item.partner_id)


class EdinProvider(Provider):
    """EDIN DOCflow: look the partner up by code (or take its id), create it when missing, invite, mark."""

    name = "edin"
    title = "EDIN DOCflow"
    actions = ("invite", "mark")
    default_base_url = "https://doc.edin.ua"
    default_rate = ("5/s",)  # none documented: conservative (providers/edin-docflow.md)
    fields = FIELDS
    required = ("partner_id", "code")

    def parse_settings(self, auth: Section, invite: Section, action: str) -> tuple[Secrets, Any]:
        email, password = auth.text("email"), auth.text("password")
        for key, value in (("email", email), ("password", password)):
            if not value:
                auth.problem(key, "is required for edin")
        if auth.has("token"):
            auth.text("token")
            auth.problem("token", "is for invoicebox; edin logs in with email + password")
        for key in ("partner_id", "type"):
            if invite.has(key):
                invite.text(key)
                invite.problem(key, "is not an option for edin")
        opts = EdinInvite(
            contract_template_id=invite.integer("contract_template_id"),
            owner_company_id=invite.integer("owner_company_id"),
            create_missing_partners=invite.flag("create_missing_partners", True),
            skip_already_invited=invite.flag("skip_already_invited", True),
            mark_status=invite.flag("mark_status", True),
            status_batch_size=invite.integer("status_batch_size", 100) or 100,
        )
        if opts.contract_template_id is not None and opts.owner_company_id is not None:
            invite.problem("", "give contract_template_id or owner_company_id, not both")
        return EdinAuth(email=email or "", password=password or ""), opts

    def rules(self, table: Table, config: Config) -> Callable[[RawRow], Row]:
        return rules.rules(table, config)

    def identity(self, values: Mapping[str, str]) -> Identity:
        """Resolved partner id, else code; with the template or owner company the invitation is for (SPEC §6)."""
        # A million rows pass here, nearly all with the config's template: its scope text is made once.
        if (tpl := values.get("contract_template_id")) is not None:
            scope = _SCOPES.get(tpl) or _SCOPES.setdefault(tpl, "tpl:" + tpl)
        elif (own := values.get("owner_company_id")) is not None:
            scope = "own:" + own
        else:
            scope = ""  # a mark-only job needs no template
        pid = values.get("partner_id", "")
        who = "pid:" + pid if pid else "code:" + values["code"]
        return _identity(Identity, (who + "|" + scope if scope else who, scope, pid))

    def reconciles(self, item: Item) -> bool:
        return True  # a look-up by code tells whether the invitation arrived (flows.py)

    def followup(self, config: Config) -> Callable[[Done], bool] | None:
        if config.action != "invite" or not config.invite.mark_status:
            return None
        return _mark_owed

    def session(self, config: Config, http: HttpClient, journal: Journal, clock: Clock,
                should_stop: Callable[[], bool]) -> Session:
        from .flows import EdinSession

        return EdinSession(config, http, journal, clock, should_stop)

"""Invoicebox's profile and its one-call flow: a lost answer cannot be looked up, so it is `unknown` (SPEC §6)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ...checkpoint import ItemState, Journal
from ...clock import Clock
from ...config import Config, Section
from ...errors import AmbiguousAPIError, AuthError, FatalAPIError, Interrupted, RetriableAPIError, UnreachableError
from ...http import HttpClient
from ...model import RawRow, Row, Table
from ...outcome import Task, Verdict, describe, record
from ...validation import header_names, normalise_email, normalise_uuid, quote
from ..base import Field, Identity, Provider, Secrets, Session
from .client import PREFIXES, InvoiceboxClient

EMAIL_MAX = 100  # the API's `identifier` is string(100)


@dataclass(frozen=True, kw_only=True)
class InvoiceboxAuth:
    token: str = field(repr=False)

    def secrets(self) -> tuple[str, ...]:
        return (self.token,)


@dataclass(frozen=True, kw_only=True)
class InvoiceboxInvite:
    partner_id: str | None = None  # the integrator's partnerId, normalised
    type: str = "email"
    api_prefix: str = "v3"  # "l3" for accounts registered through the business cabinet (SPEC §10)


FIELDS = (
    Field("email", ("email", "e-mail", "identifier", "Ел. пошта", "Електронна пошта", "Электронная почта", "Почта"),
          "yes", "Partner's e-mail address (the invitation's identifier), at most 100 characters.",
          "Електронна адреса партнера (ідентифікатор запрошення), не довше 100 символів.",
          "e-mail, identifier, Ел. пошта, Електронна пошта"),
    Field("partner_id", ("partner_id", "partnerId", "ID контрагента", "ID партнера", "Ідентифікатор партнера",
                         "Идентификатор партнера"),
          "no", "The integrator's partnerId (a UUID, 36 characters). Leave empty to use the config's "
                "invite.partner_id.",
          "partnerId інтегратора (UUID, 36 символів). Залиште порожнім, щоб узяти invite.partner_id з конфігурації.",
          "partnerId, ID партнера"),
)
_EDIN_KEYS = ("contract_template_id", "owner_company_id", "create_missing_partners", "skip_already_invited",
              "mark_status", "status_batch_size")


class InvoiceboxProvider(Provider):
    """Invoicebox partner API: one POST per row, with a static Bearer token."""

    name = "invoicebox"
    title = "Invoicebox"
    default_base_url = "https://api.invoicebox.ru"
    default_rate = ("100/30s",)  # the documented per-account limit
    fields = FIELDS
    required = ("email",)

    def parse_settings(self, auth: Section, invite: Section, action: str) -> tuple[Secrets, Any]:
        token = auth.text("token")
        if not token:
            auth.problem("token", "is required for invoicebox")
        for key in ("email", "password"):
            if auth.has(key):
                auth.text(key)
                auth.problem(key, "is for edin; invoicebox uses a token")
        for key in _EDIN_KEYS:
            if invite.has(key):
                invite.text(key)
                invite.problem(key, "is not an option for invoicebox")
        partner_id = invite.text("partner_id")
        # One UUID rule for the config and the rows (validation.normalise_uuid).
        if partner_id is not None and not normalise_uuid(partner_id):
            invite.problem("partner_id", f"must be a UUID (36 characters), got {partner_id!r}")
        kind = invite.text("type", "email") or "email"
        if kind != "email":
            invite.problem("type", f"only 'email' is documented, got {kind!r}")
        prefix = invite.text("api_prefix", "v3") or "v3"
        if prefix not in PREFIXES:
            invite.problem("api_prefix", f"must be {' or '.join(PREFIXES)}, got {prefix!r}")
        return InvoiceboxAuth(token=token or ""), InvoiceboxInvite(
            partner_id=normalise_uuid(partner_id) or None if partner_id else None, type=kind, api_prefix=prefix)

    def rules(self, table: Table, config: Config) -> Callable[[RawRow], Row]:
        return rules(table, config)

    def identity(self, values: Mapping[str, str]) -> Identity:
        """Partner id + lower-cased address (SPEC §6)."""
        return Identity(f"{values['partner_id']}|{values['email'].lower()}")

    def session(self, config: Config, http: HttpClient, journal: Journal, clock: Clock,
                should_stop: Callable[[], bool]) -> Session:
        assert isinstance(config.auth, InvoiceboxAuth)
        client = InvoiceboxClient(http, token=config.auth.token, prefix=config.invite.api_prefix)
        return InvoiceboxSession(client, journal, clock, resend_ambiguous=config.retry.ambiguous == "resend",
                                 should_stop=should_stop)


class InvoiceboxSession(Session):
    """One POST per row; a lost answer cannot be checked, so it is `unknown` (or sent again, if asked)."""

    RESENDS = 2  # with retry.ambiguous: resend, how often a lost answer is sent again

    def __init__(self, client: InvoiceboxClient, journal: Journal, clock: Clock, *, resend_ambiguous: bool,
                 should_stop: Callable[[], bool]) -> None:
        self.client, self.journal, self.clock, self.should_stop = client, journal, clock, should_stop
        self.resends = self.RESENDS if resend_ambiguous else 0

    def handle(self, task: Task) -> Verdict:
        values, result = task.values, task.result
        for attempt in range(self.resends + 1):
            if self.should_stop():
                return Verdict.OK
            self.journal.begin(task.identity, step="invite")
            try:
                inv = self.client.invite(partner_id=values["partner_id"], email=values["email"])
            except (Interrupted, UnreachableError):
                # A wait between tries, or no safe connection at all: no request is outstanding.
                record(self.journal, task, ItemState.PENDING, self.clock)
                raise
            except AmbiguousAPIError as err:
                if attempt < self.resends:
                    result.attempts += err.attempts
                    continue
                record(self.journal, task, ItemState.UNKNOWN, self.clock, error=err,
                       detail=f"no answer after sending, may have been delivered ({describe(err)})")
                return Verdict.BROKEN
            except (FatalAPIError, RetriableAPIError) as err:
                if err.http_status == 401:
                    # A static token that is refused fails every row alike: stop, charge no row (SPEC §7).
                    record(self.journal, task, ItemState.PENDING, self.clock)
                    raise AuthError("Invoicebox refused the token (401 unauthorized); check auth.token") from None
                record(self.journal, task, ItemState.FAILED, self.clock, detail=describe(err), error=err)
                return Verdict.BROKEN if isinstance(err, RetriableAPIError) else Verdict.REFUSED
            result.invitation_id, result.request_id = inv.invitation_id, inv.request_id
            result.http_status, result.attempts = inv.http_status, result.attempts + inv.attempts
            record(self.journal, task, ItemState.SENT, self.clock)
            return Verdict.OK
        raise AssertionError("unreachable")


def rules(table: Table, config: Config) -> Callable[[RawRow], Row]:
    """The Invoicebox row check (SPEC §4) for this file's columns and this config."""
    col, h = table.fields.get, header_names(table)
    i_email, i_pid = col("email"), col("partner_id")
    cfg_pid = config.invite.partner_id or ""  # normalised by parse_settings
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
                problems.append(f"{h('email')}: {quote(email)} is not a valid e-mail address ({why})")
            elif len(address) > EMAIL_MAX:
                problems.append(f"{h('email')}: {quote(email)} is longer than {EMAIL_MAX} characters")
            else:
                values["email"] = address
        pid = cells[i_pid] if i_pid is not None else ""
        if pid:
            if ok := normalise_uuid(pid):
                values["partner_id"] = ok
            else:
                problems.append(f"{h('partner_id')}: {quote(pid)} is not a partner id (a UUID of 36 characters)")
        elif cfg_pid:
            values["partner_id"] = cfg_pid
        else:
            problems.append(no_pid)
        return Row(raw.line, cells, values, tuple(problems) if problems else ())

    return check
